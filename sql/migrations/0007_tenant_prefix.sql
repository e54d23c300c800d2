-- Tenants are exact (issue 22): a key's qr_prefix is one or more segments of A-Z a-z 0-9 . _ -
-- each ending in ":" (shared/api-keys.ts, TENANT_PREFIX), so "acme:" never matches "acme2:…" or
-- "acme-eu…". Keys made before this migration could have any non-empty prefix ("acme",
-- "acme-"). No conversion keeps both their access and exactness: appending ":" would lock the key
-- out of its own QR ids ("acme-1" does not start with "acme-:"), and keeping the old prefix is the
-- hole. So an upgrade with such a live key stops here, naming each one and what to do; nothing is
-- changed until the operator has decided. A revoked key never authenticates, so its prefix may
-- stay (and the check stops anyone from un-revoking it).
DO $$
DECLARE
  bad text;
BEGIN
  SELECT string_agg(format('%s (%s, qr_prefix %L)', id, name, qr_prefix), ', ' ORDER BY id) INTO bad
  FROM api_keys
  WHERE revoked_at IS NULL AND qr_prefix IS NOT NULL
    AND NOT (qr_prefix ~ '^([A-Za-z0-9._-]+:)+$' AND char_length(qr_prefix) <= 127);
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'api_keys: tenant prefixes must now end with ":" (e.g. acme:), or a key of "acme" would read "acme2-…": %. Revoke each (bun run keys revoke <id>), create its successor with a prefix ending in ":" (bun run keys create --qr-prefix acme: …; its QR ids must then start with it), then run bun run migrate again', bad;
  END IF;
END
$$;

ALTER TABLE api_keys
  ADD CONSTRAINT api_keys_qr_prefix_tenant CHECK (
    qr_prefix IS NULL OR revoked_at IS NOT NULL
    OR (qr_prefix ~ '^([A-Za-z0-9._-]+:)+$' AND char_length(qr_prefix) <= 127)
  );

-- Managed API keys (`bun run keys create|list|revoke|rotate`). Only the SHA-256 of a secret is
-- stored, never the secret. The edge server loads this table at start and every
-- API_KEYS_REFRESH_SECONDS, so a revocation takes effect without a restart.
CREATE TABLE api_keys (
  -- Stable, not secret: in logs, metrics and rate limits (e.g. key_3f9a0c1d2e4b).
  id text PRIMARY KEY CHECK (id ~ '^key_[0-9a-f]{12}$'),
  -- The client or tenant.
  name text NOT NULL CHECK (name <> ''),
  -- The secret's first 8 characters (qrs_ and 4 random ones), to match a leaked key to its row.
  prefix text NOT NULL,
  secret_sha256 bytea NOT NULL UNIQUE CHECK (octet_length(secret_sha256) = 32),
  scopes text[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['scans:write', 'stats:read']),
  -- A tenant: the key may only touch QR ids starting with this; NULL for all.
  qr_prefix text CHECK (qr_prefix <> ''),
  -- A per-key rate limit (events per second and burst), or NULL for the server's default.
  rate_limit_per_second integer CHECK (rate_limit_per_second > 0),
  rate_limit_burst integer CHECK (rate_limit_burst > 0),
  rotated_from text REFERENCES api_keys (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_at timestamptz,
  -- Written by the edge servers once per refresh interval, not per request.
  last_used_at timestamptz,
  CHECK ((rate_limit_per_second IS NULL) = (rate_limit_burst IS NULL))
);

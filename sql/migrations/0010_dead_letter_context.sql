-- What ties a dead letter to the request that sent it, from the original message's headers
-- (worker/dead-letters.ts): its event_id (else the payload's), the edge's request_id and the W3C
-- traceparent. Null when the message had none (a record produced around the edge). Nullable
-- columns without a default: adding them rewrites nothing.
ALTER TABLE dead_letters
  ADD COLUMN event_id text,
  ADD COLUMN request_id text,
  ADD COLUMN traceparent text;

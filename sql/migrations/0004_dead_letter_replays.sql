-- `bun run dlq replay` re-produces a dead letter to the scans topic once it can be stored (after
-- a fix), and records when; a replayed dead letter is not offered again.
ALTER TABLE dead_letters ADD COLUMN replayed_at timestamptz;
CREATE INDEX dead_letters_pending ON dead_letters (id) WHERE replayed_at IS NULL;

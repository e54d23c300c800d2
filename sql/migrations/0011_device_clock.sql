-- The device's clock (contract version 2, shared/event.ts): `sent_at` is the device's clock when it
-- sent the event, and `derived_at` the scan's instant on the edge's clock, scanned_at moved by the
-- offset received_at - sent_at. Both are null in rows stored before this migration (no rewrite of
-- the stored days: nullable columns without a default are a catalog change only).
--
-- The key and the partition stay (event_id, scanned_at), the device's own values, which a retry
-- sends unchanged; derived_at moves with each retry's measured offset, so it cannot be in the key.
-- scan_counts' minutes are derived_at's (coalesce(derived_at, scanned_at) for older rows).
ALTER TABLE scan_events ADD COLUMN sent_at timestamptz, ADD COLUMN derived_at timestamptz;

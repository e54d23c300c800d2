-- scan_counts rows are updated in place over and over (one upsert per QR code per minute bucket
-- per batch). Leaving half of each page free lets those updates be HOT: the new row version stays
-- on the same page and needs no new index entry. Measured on 5,000-row batches with 5,000
-- distinct buckets: the counts upsert went from 26 to 16 ms. Applies to pages written from now on.
ALTER TABLE scan_counts SET (fillfactor = 50);

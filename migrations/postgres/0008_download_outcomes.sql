-- What each download request actually delivered, kept after its lease is
-- settled (leases are deleted then), for the accounting of disclosures and
-- the patient's access view: the length of the representation served, the
-- bytes handed to the connection, when the last of them was, and whether
-- the request's span was sent in full or cut short. NULL while the request
-- runs, and for requests recorded before this migration (their outcome was
-- never kept).
ALTER TABLE download_events ADD COLUMN total BIGINT;
ALTER TABLE download_events ADD COLUMN delivered BIGINT;
ALTER TABLE download_events ADD COLUMN ended_at TEXT;
ALTER TABLE download_events ADD COLUMN cut BIGINT;
-- The sequence numbers of the request's audit entries: the one that
-- admitted it (in the same transaction as this row) and the one that
-- recorded its end or cut (in the transaction that wrote the outcome).
-- NULL where no such entry exists (a lease settled at start after a crash
-- has no end entry).
ALTER TABLE download_events ADD COLUMN start_seq BIGINT;
ALTER TABLE download_events ADD COLUMN end_seq BIGINT;

-- The request a lease belongs to, so settling it (normally, as stale, or
-- at start after a crash) writes the outcome onto that request; and the
-- bytes of the representation handed over (`sent` counts the budget's
-- units, which for a sealed download are scaled to the plaintext size).
ALTER TABLE download_leases ADD COLUMN event_id BIGINT REFERENCES download_events (event_id);
ALTER TABLE download_leases ADD COLUMN delivered BIGINT NOT NULL DEFAULT 0;

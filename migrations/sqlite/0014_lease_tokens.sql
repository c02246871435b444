-- A download lease's holder names it by its id and a random token drawn
-- when it was reserved. An id alone is not enough: on SQLite a deleted
-- lease's id is handed out again (INTEGER PRIMARY KEY without
-- AUTOINCREMENT), so the holder of a lease settled as stale (a stream
-- that stalled past the TTL, then resumed) would otherwise record progress
-- on, or settle, another download's lease that took its id. Leases left
-- from before this migration keep token 0; they belong to an earlier run
-- and are settled at start or once stale.
ALTER TABLE download_leases ADD COLUMN token INTEGER NOT NULL DEFAULT 0;

-- Bytes of a running download are reserved in a lease and charged to the
-- file's budget (grant_files.bytes_served) only as they are actually sent:
-- when the download ends or is cut, its lease is settled at the bytes sent,
-- so an interrupted download can be continued. A lease whose gateway died
-- (no heartbeat) is settled at its last recorded progress, as cut.
CREATE TABLE download_leases (
    lease_id     INTEGER PRIMARY KEY,
    grant_id     TEXT NOT NULL,
    file_id      TEXT NOT NULL,
    reserved     INTEGER NOT NULL CHECK (reserved >= 0),
    sent         INTEGER NOT NULL DEFAULT 0 CHECK (sent >= 0),
    -- 1 unless the download was settled as complete.
    cut          INTEGER NOT NULL DEFAULT 1,
    heartbeat_at INTEGER NOT NULL,
    FOREIGN KEY (grant_id, file_id) REFERENCES grant_files (grant_id, file_id)
);
CREATE INDEX download_leases_by_file ON download_leases (grant_id, file_id);

-- Bytes a cut download may have had in flight (sent, never received): a
-- continuation asks for them again, and the budget allows them (bounded).
ALTER TABLE grant_files ADD COLUMN in_flight_allowance INTEGER NOT NULL DEFAULT 0;

-- Download grants for reviewing centres, their files, and what was served.
ALTER TABLE files ADD COLUMN object_sha256 TEXT;
ALTER TABLE centres ADD COLUMN updated_at TEXT;

CREATE TABLE grants (
    grant_id      TEXT PRIMARY KEY,
    case_id       TEXT NOT NULL REFERENCES cases (case_id),
    centre_id     TEXT NOT NULL REFERENCES centres (centre_id),
    token_hash    BLOB NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    max_downloads INTEGER NOT NULL CHECK (max_downloads > 0),
    revoked_at    TEXT,
    revoked_reason TEXT
);
CREATE INDEX grants_by_case ON grants (case_id);
CREATE INDEX grants_by_centre ON grants (centre_id);

CREATE TABLE grant_files (
    grant_id     TEXT NOT NULL REFERENCES grants (grant_id),
    file_id      TEXT NOT NULL,
    downloads    INTEGER NOT NULL DEFAULT 0,
    bytes_served INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grant_id, file_id)
);

-- One row per download started (a request from byte 0) or continued.
CREATE TABLE download_events (
    event_id    INTEGER PRIMARY KEY,
    grant_id    TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    file_id     TEXT NOT NULL,
    centre_id   TEXT NOT NULL,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('plaintext', 'sealed')),
    range_start INTEGER NOT NULL,
    bytes       INTEGER NOT NULL
);
CREATE INDEX download_events_by_case ON download_events (case_id);

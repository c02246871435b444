-- casegate schema v1. Secrets are stored only as hashes; patient data only
-- as ciphertext sealed under the case key.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE operator_tokens (
    token_id   TEXT PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('coordinator', 'compliance')),
    token_hash BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE cases (
    case_id           TEXT PRIMARY KEY,
    created_at        TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('open', 'deleted')),
    deleted_at        TEXT,
    -- case key wrapped under master key version kek_version; NULL once shredded
    wrapped_key       BLOB,
    kek_version       INTEGER,
    -- the coordinator's reference, sealed with the case key
    reference_sealed  BLOB,
    upload_token_hash BLOB UNIQUE,
    upload_expires_at TEXT NOT NULL
);

CREATE TABLE files (
    file_id     TEXT PRIMARY KEY,
    case_id     TEXT NOT NULL REFERENCES cases (case_id),
    state       TEXT NOT NULL CHECK (state IN ('uploading', 'complete', 'flagged')),
    size        INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    -- filename, category, sha256, DICOM fields: JSON sealed with the case key
    meta_sealed BLOB NOT NULL
);
CREATE INDEX files_by_case ON files (case_id);

CREATE TABLE centres (
    centre_id         TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    country           TEXT NOT NULL,
    cert_sha256       TEXT NOT NULL UNIQUE,
    cert_der          BLOB NOT NULL,
    x25519_public_key BLOB NOT NULL,
    created_at        TEXT NOT NULL,
    disabled_at       TEXT
);

-- One row per allowed or denied action. `seq` is assigned max+1 inside the
-- writing transaction, so it is gapless. Rows are never updated or deleted.
CREATE TABLE audit_log (
    seq                INTEGER PRIMARY KEY,
    time               TEXT NOT NULL,
    actor              TEXT NOT NULL,
    role               TEXT NOT NULL,
    action             TEXT NOT NULL,
    case_id            TEXT,
    file_id            TEXT,
    centre_id          TEXT,
    grant_id           TEXT,
    outcome            TEXT NOT NULL CHECK (outcome IN ('allow', 'deny', 'error')),
    reason             TEXT,
    client_addr        TEXT,
    client_cert_sha256 TEXT,
    request_id         TEXT
);
CREATE INDEX audit_by_case ON audit_log (case_id);
CREATE INDEX audit_by_time ON audit_log (time);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

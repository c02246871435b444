-- casegate schema v1. Secrets are stored only as hashes; patient data only
-- as ciphertext sealed under the case key.

-- Append-only tables refuse changes with this (a PostgreSQL trigger
-- function; the SQLite schema raises the same messages).
CREATE FUNCTION casegate_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END;
$$;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE operator_tokens (
    token_id   TEXT PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('coordinator', 'compliance')),
    token_hash BYTEA NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE cases (
    case_id           TEXT PRIMARY KEY,
    created_at        TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('open', 'deleted')),
    deleted_at        TEXT,
    -- case key wrapped under master key version kek_version; NULL once shredded
    wrapped_key       BYTEA,
    kek_version       BIGINT,
    -- the coordinator's reference, sealed with the case key
    reference_sealed  BYTEA,
    upload_token_hash BYTEA UNIQUE,
    upload_expires_at TEXT NOT NULL
);

CREATE TABLE files (
    file_id     TEXT PRIMARY KEY,
    case_id     TEXT NOT NULL REFERENCES cases (case_id),
    state       TEXT NOT NULL CHECK (state IN ('uploading', 'complete', 'flagged')),
    size        BIGINT NOT NULL,
    created_at  TEXT NOT NULL,
    -- filename, category, sha256, DICOM fields: JSON sealed with the case key
    meta_sealed BYTEA NOT NULL
);
CREATE INDEX files_by_case ON files (case_id);

CREATE TABLE centres (
    centre_id         TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    country           TEXT NOT NULL,
    cert_sha256       TEXT NOT NULL UNIQUE,
    cert_der          BYTEA NOT NULL,
    x25519_public_key BYTEA NOT NULL,
    created_at        TEXT NOT NULL,
    disabled_at       TEXT
);

-- One row per allowed or denied action. `seq` is assigned max+1 inside the
-- writing transaction, so it is gapless. Rows are never updated or deleted.
CREATE TABLE audit_log (
    seq                BIGINT PRIMARY KEY,
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
    FOR EACH ROW EXECUTE FUNCTION casegate_refuse_change('audit_log is append-only');

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION casegate_refuse_change('audit_log is append-only');
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION casegate_refuse_change('audit_log is append-only');

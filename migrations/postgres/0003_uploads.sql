-- tus upload sessions. One per file being uploaded; the durable state of an
-- upload is this row: `upload_offset` plaintext bytes are stored, as the
-- object prefix described by `store_progress` plus the partial last chunk
-- sealed in `tail_sealed` (ciphertext, never plaintext).
CREATE TABLE uploads (
    upload_id      TEXT PRIMARY KEY,
    case_id        TEXT NOT NULL REFERENCES cases (case_id),
    file_id        TEXT NOT NULL UNIQUE,
    upload_length  BIGINT NOT NULL,
    upload_offset  BIGINT NOT NULL DEFAULT 0,
    tail_sealed    BYTEA,
    store_progress TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('active', 'complete', 'terminated', 'expired')),
    -- the Upload-Metadata header as sent, sealed under the case key
    metadata_sealed BYTEA
);
CREATE INDEX uploads_by_case ON uploads (case_id);
CREATE INDEX uploads_by_expiry ON uploads (state, expires_at);

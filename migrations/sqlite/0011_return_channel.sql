-- The return channel: files come from the patient, a reviewing centre (its
-- written opinion) or a coordinator (translations, summaries); a file a
-- coordinator released is downloadable by the patient. Existing files are
-- the patient's. Uploads record who created them, so only the same kind
-- of uploader (the same centre) can resume or end one. A grant may forbid
-- its centre to reply.
ALTER TABLE files ADD COLUMN source_kind TEXT NOT NULL DEFAULT 'patient'
    CHECK (source_kind IN ('patient', 'centre', 'coordinator'));
ALTER TABLE files ADD COLUMN source_centre_id TEXT;
ALTER TABLE files ADD COLUMN released_at TEXT;
ALTER TABLE files ADD COLUMN released_by TEXT;

-- 'patient', 'coordinator' or 'centre:<centre_id>'
ALTER TABLE uploads ADD COLUMN uploader TEXT NOT NULL DEFAULT 'patient';

ALTER TABLE grants ADD COLUMN may_reply INTEGER NOT NULL DEFAULT 1 CHECK (may_reply IN (0, 1));
-- Grants issued before centres could reply were issued for downloading
-- only: they do not gain the right to write into the case.
UPDATE grants SET may_reply = 0;

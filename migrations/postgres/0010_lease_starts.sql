-- Whether a lease counted a start of a download (a request from byte 0)
-- against `grant_files.downloads`. A lease settled with nothing sent (the
-- first window failed to read, the client left before the first byte, the
-- gateway died before its first heartbeat) gives that use back: the centre
-- received nothing it could continue from.
ALTER TABLE download_leases ADD COLUMN starts BIGINT NOT NULL DEFAULT 0;

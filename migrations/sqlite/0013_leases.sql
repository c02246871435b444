-- Named leases shared by every gateway replica on one database: a holder
-- keeps one while it works (renewing it), and a lease whose holder died
-- expires, so another replica can take over. `expires_at` is in
-- milliseconds since 1970 by the holders' clocks (kept in sync by NTP).
-- Names: `upload:<upload_id>` (one PATCH of an upload at a time, on any
-- replica), `audit-checkpoint` (the replica that signs periodic
-- checkpoints).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

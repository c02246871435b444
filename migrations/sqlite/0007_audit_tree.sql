-- The audit log's Merkle tree (RFC 6962 / RFC 9162): the hash of every
-- complete subtree, appended in the transaction of the entry that completes
-- it, so entries and tree are never apart. Roots and proofs are computed
-- from these in O(log n) lookups. A node is stored at its place in append
-- order (post-order: the nodes entry i completes follow those of the
-- entries before it, its leaf first, then upward; `audit::merkle::position`),
-- so every append writes at the end of the table. A tree of n entries holds
-- 2n − popcount(n) nodes. Entries written before this table existed (up
-- to the legacy mark below) are added at the next start; no other entry
-- ever joins the tree except through an append.
CREATE TABLE audit_tree (
    pos  INTEGER PRIMARY KEY CHECK (pos >= 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32)
);

CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree
BEGIN
    SELECT RAISE(ABORT, 'audit_tree is append-only');
END;

CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN
    SELECT RAISE(ABORT, 'audit_tree is append-only');
END;

-- The legacy mark: the highest sequence number that existed when the tree
-- was introduced. Only entries up to it may be added to the tree from the
-- rows alone (`db::audit::tree::catch_up`); an entry above it that the tree
-- does not hold was written behind the gateway's back and is refused, never
-- absorbed and signed.
CREATE TABLE audit_tree_legacy (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL CHECK (last_seq >= 0)
);

INSERT INTO audit_tree_legacy (id, last_seq)
SELECT 1, COALESCE(MAX(seq), 0) FROM audit_log;

CREATE TRIGGER audit_tree_legacy_no_update BEFORE UPDATE ON audit_tree_legacy
BEGIN
    SELECT RAISE(ABORT, 'audit_tree_legacy is written once');
END;

CREATE TRIGGER audit_tree_legacy_no_delete BEFORE DELETE ON audit_tree_legacy
BEGIN
    SELECT RAISE(ABORT, 'audit_tree_legacy is written once');
END;

CREATE TRIGGER audit_tree_legacy_no_insert BEFORE INSERT ON audit_tree_legacy
WHEN (SELECT COUNT(*) FROM audit_tree_legacy) > 0
BEGIN
    SELECT RAISE(ABORT, 'audit_tree_legacy is written once');
END;

-- Alerts (`action` starting `alert.`) are a handful among millions of
-- entries: GET /audit/alerts reads them (newest first, and counts per kind)
-- from this partial index instead of scanning the log.
CREATE INDEX audit_log_alerts ON audit_log (seq, action) WHERE action LIKE 'alert.%';

-- Signed checkpoints (C2SP tlog-checkpoint in a signed note): one per tree
-- size the gateway signed.
CREATE TABLE audit_checkpoints (
    tree_size  INTEGER PRIMARY KEY CHECK (tree_size >= 0),
    root       BLOB NOT NULL CHECK (length(root) = 32),
    note       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

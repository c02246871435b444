-- Each completed file's chunk size, as written in its object's header, so
-- a grant's listing can state every file's sealed length without reading
-- the objects. Every object written before this column existed used the
-- writers' 64 KiB.
ALTER TABLE files ADD COLUMN chunk_size INTEGER NOT NULL DEFAULT 65536
    CHECK (chunk_size BETWEEN 16 AND 1048576);

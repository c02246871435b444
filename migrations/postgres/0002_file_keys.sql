-- Each file's data key: its id (carried in the object header) and the key
-- wrapped under the case key. Shredding a case deletes these rows.
ALTER TABLE files ADD COLUMN key_id BYTEA;
ALTER TABLE files ADD COLUMN wrapped_key BYTEA;

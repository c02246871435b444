// A file's SHA-256 computed in the browser, the value the gateway records
// for a file that arrived: how the page tells a file already sent from a
// different file with the same name and size (a second hospital CD uses the
// same generic paths and often the same slice sizes). Files up to 64 MiB
// are hashed whole by the browser's own crypto.subtle (native, ~10x faster
// than JavaScript); larger ones are read in 8 MiB slices and hashed by
// @noble/hashes, so a file of any size is hashed without holding it in
// memory (the next slice is read while the current one is hashed).
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

/** Files up to this size are read whole and hashed by crypto.subtle. */
const WHOLE_BYTES = 64 * 1024 * 1024;
/** Bytes read at a time from a larger file. */
const SLICE_BYTES = 8 * 1024 * 1024;

function readSlice(file, offset) {
  return file.slice(offset, Math.min(file.size, offset + SLICE_BYTES)).arrayBuffer();
}

/**
 * The lowercase hex SHA-256 of `file`; calls `onBytes(n)` after each slice of
 * `n` bytes. Throws if the file cannot be read.
 */
export async function sha256File(file, onBytes = () => {}) {
  if (file.size <= WHOLE_BYTES) {
    const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
    onBytes(file.size);
    return bytesToHex(new Uint8Array(digest));
  }
  const hash = sha256.create();
  let next = readSlice(file, 0);
  for (let offset = 0; offset < file.size; offset += SLICE_BYTES) {
    const bytes = new Uint8Array(await next);
    if (offset + SLICE_BYTES < file.size) next = readSlice(file, offset + SLICE_BYTES);
    hash.update(bytes);
    onBytes(bytes.length);
  }
  return bytesToHex(hash.digest());
}

// The one patient API call the page makes besides tus: the case manifest
// (`GET /api/v1/patient/case`), which says whether the link works, whether
// it may still upload (`upload_open`, `upload_expires_at`) and what has
// arrived (names, sizes and the SHA-256 the server recorded).

/**
 * Reads the manifest. Returns `{ kind, manifest }` where kind is `ok`,
 * `expired` (readable, but uploading is over), `unknown` (no such link),
 * `busy`, `unreachable` or `service`.
 */
export async function readCase(token) {
  let response;
  try {
    response = await fetch('/api/v1/patient/case', {
      headers: { Authorization: `Bearer ${token}` },
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    return { kind: 'unreachable' };
  }
  if (response.status === 401) return { kind: 'unknown' };
  if (response.status === 403) {
    const problem = await response.json().catch(() => ({}));
    return { kind: problem.code === 'upload_expired' ? 'expired' : 'unknown' };
  }
  if (response.status === 429) return { kind: 'busy' };
  if (!response.ok) return { kind: 'service' };
  const manifest = await response.json().catch(() => null);
  if (!manifest || !Array.isArray(manifest.files)) return { kind: 'service' };
  return { kind: manifest.upload_open === false ? 'expired' : 'ok', manifest };
}

/**
 * Files of the manifest that arrived whole, by size: the SHA-256s the server
 * recorded and the names. A local file has arrived when a file of its size
 * has its SHA-256 — never by name and size alone, which a second hospital CD
 * (same generic paths, same slice sizes) would match by accident.
 */
export function arrived(manifest) {
  const bySize = new Map();
  for (const f of manifest?.files ?? []) {
    if (f.state !== 'complete' && f.state !== 'flagged') continue;
    if (!bySize.has(f.size)) bySize.set(f.size, { hashes: new Set(), names: new Set() });
    const same = bySize.get(f.size);
    if (typeof f.sha256 === 'string') same.hashes.add(f.sha256);
    same.names.add(f.filename);
  }
  return bySize;
}

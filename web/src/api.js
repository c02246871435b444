// The one patient API call the page makes besides tus: the case manifest
// (`GET /api/v1/patient/case`), which says whether the link works, whether
// it may still upload (`upload_open`, `upload_expires_at`) and what has
// arrived (names, sizes and the SHA-256 the server recorded).

/** Waits before asking again when the server does not say how long. */
const RETRY_DELAYS_MS = [1000, 2000, 5000, 10000, 20000, 30000];
/** The longest wait a Retry-After header can ask for. */
const LONGEST_WAIT_MS = 5 * 60 * 1000;

/** A Retry-After header (seconds or an HTTP date) in milliseconds, or null. */
function retryAfter(response) {
  const value = (response.headers.get('Retry-After') || '').trim();
  if (!value) return null;
  const ms = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  // Never sooner than a second: `0` or a past date must not make the page
  // ask again without a pause.
  return Number.isFinite(ms) ? Math.min(LONGEST_WAIT_MS, Math.max(1000, ms)) : null;
}

/**
 * Reads the manifest. Returns `{ kind, manifest, retryAfterMs }` where kind
 * is `ok`, `expired` (readable, but uploading is over), `unknown` (no such
 * link), `busy` (429), `unreachable` (no answer) or `service` (5xx, or an
 * answer that is not a manifest).
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
  if (response.status === 429) return { kind: 'busy', retryAfterMs: retryAfter(response) };
  if (response.status >= 500) return { kind: 'service', retryAfterMs: retryAfter(response) };
  // Any other refusal (a proxy's 400, 404, 410…): asking again would not help.
  if (!response.ok) return { kind: 'unknown' };
  const manifest = await response.json().catch(() => null);
  if (!manifest || !Array.isArray(manifest.files)) return { kind: 'service' };
  return { kind: manifest.upload_open === false ? 'expired' : 'ok', manifest };
}

// Coming back online cuts the wait short only when the network was the
// problem, never a pause the server asked for.
const wait = (ms, untilOnline) => new Promise((resolve) => {
  const done = () => {
    clearTimeout(timer);
    window.removeEventListener('online', done);
    resolve();
  };
  const timer = setTimeout(done, ms);
  if (untilOnline) window.addEventListener('online', done);
});

/**
 * Reads the manifest, and while the server cannot be reached or is busy
 * (no answer, 429, 5xx) keeps asking, with growing pauses or as long as its
 * Retry-After says, calling `onWaiting(kind)` before each pause. Returns the
 * first real answer: the manifest, or that the link is unknown or expired.
 */
export async function readCaseRetrying(token, onWaiting) {
  for (let attempt = 0; ; attempt += 1) {
    const answer = await readCase(token);
    if (answer.kind !== 'unreachable' && answer.kind !== 'busy' && answer.kind !== 'service') return answer;
    onWaiting(answer.kind);
    await wait(
      answer.retryAfterMs ?? RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)],
      answer.kind === 'unreachable',
    );
  }
}

/**
 * The manifest's files the patient sent: it also lists documents a
 * coordinator released to the patient (a centre's opinion, a translation),
 * which are not the patient's uploads.
 */
export function sentByPatient(manifest) {
  return (manifest?.files ?? []).filter((f) => (f.source?.kind ?? 'patient') === 'patient');
}

/**
 * Files of the manifest that arrived whole, by size: the SHA-256s the server
 * recorded and the names. A local file has arrived when a file of its size
 * has its SHA-256 — never by name and size alone, which a second hospital CD
 * (same generic paths, same slice sizes) would match by accident.
 */
export function arrived(manifest) {
  const bySize = new Map();
  for (const f of sentByPatient(manifest)) {
    if (f.state !== 'complete' && f.state !== 'flagged') continue;
    if (!bySize.has(f.size)) bySize.set(f.size, { hashes: new Set(), names: new Set() });
    const same = bySize.get(f.size);
    if (typeof f.sha256 === 'string') same.hashes.add(f.sha256);
    same.names.add(f.filename);
  }
  return bySize;
}

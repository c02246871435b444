// Sends the chosen files over tus (tus-js-client): a few files at a time,
// each in PATCHes of up to 64 MiB;
// retried with growing pauses on network errors and server trouble; and
// resumable after the tab is closed: each upload's address is kept in
// localStorage by resume.js (no file name, no token). A file that has
// arrived is removed from that storage.
import * as tus from 'tus-js-client';
import { fingerprint, resumeStorage } from './resume.js';

const PARALLEL = 3;
/**
 * Bytes per PATCH. Each PATCH costs a round trip and a sync on the gateway;
 * a PATCH cut off midway loses nothing the gateway had made durable, so
 * large ones are safe. 64 MiB sent a file ~1.5x faster than 8 MiB in
 * bench/upload-page (docs/benchmarks.md).
 */
const CHUNK_BYTES = 64 * 1024 * 1024;
/**
 * Files up to this size go in the request that creates their upload (tus
 * creation-with-upload): one request instead of two for each image of a
 * CD. Larger files are created empty first, so their address is kept for
 * resuming before the first big PATCH starts.
 */
const SEND_WITH_CREATION_BYTES = 8 * 1024 * 1024;
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000, 30000, 60000];
/** After the client has used up its retries on a network error, the page starts again after this pause. */
const UNREACHABLE_PAUSE_MS = 30000;
/** Answers to wait out and try again rather than give up on. */
const RETRY_STATUSES = new Set([0, 408, 409, 423, 429]);

/** Why a file failed: a key into the messages (`error_…`) and whether every other file must stop too. */
function classify(error) {
  const response = error && error.originalResponse;
  const status = response ? response.getStatus() : 0;
  let code = '';
  try {
    code = JSON.parse(response.getBody()).code || '';
  } catch {
    // Not a problem document.
  }
  if (!error || !error.originalRequest) return { kind: 'unreadable', stopAll: false };
  if (status === 0) return { kind: 'unreachable', stopAll: false, retry: true };
  if (status === 401) return { kind: 'link_unknown', stopAll: true };
  if (status === 403 && code === 'upload_expired') return { kind: 'expired_during', stopAll: true };
  if (status === 403) return { kind: 'link_unknown', stopAll: true };
  if (status === 413) return { kind: code === 'quota_exceeded' ? 'quota' : 'too_large', stopAll: false };
  if (status === 429 || status >= 500) return { kind: 'busy', stopAll: false, retry: true };
  return { kind: 'other', stopAll: false };
}

function shouldRetry(error) {
  const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
  return RETRY_STATUSES.has(status) || status >= 500;
}

/**
 * Runs the uploads of `jobs` (`{ file, path, size, category, state: 'waiting', sent: 0 }`), calling
 * `onChange()` whenever a job's `state`, `sent` or `error` changes; resolves
 * when every job has arrived or failed for good.
 */
export function send({ token, caseKey, jobs, onChange }) {
  const endpoint = new URL('/tus/', location.href).href;
  let stopped = false;
  const storage = resumeStorage(caseKey);

  return new Promise((resolve) => {
    let next = 0;
    let running = 0;
    const finishIfDone = () => {
      if (running === 0 && (stopped || next >= jobs.length)) resolve();
    };
    const launch = () => {
      while (!stopped && running < PARALLEL && next < jobs.length) {
        const job = jobs[next];
        next += 1;
        running += 1;
        runOne(job).finally(() => {
          running -= 1;
          launch();
          finishIfDone();
        });
      }
      finishIfDone();
    };

    const runOne = (job) => new Promise((done) => {
      const upload = new tus.Upload(job.file, {
        endpoint,
        headers: { Authorization: `Bearer ${token}` },
        metadata: { filename: job.path, category: job.category, filetype: job.file.type || 'application/octet-stream' },
        chunkSize: CHUNK_BYTES,
        uploadDataDuringCreation: job.size <= SEND_WITH_CREATION_BYTES,
        retryDelays: RETRY_DELAYS,
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        fingerprint: () => fingerprint(caseKey, job),
        urlStorage: storage,
        onShouldRetry: (error) => {
          const retry = shouldRetry(error);
          if (retry) {
            // Tell the patient at the first failure, not after the last
            // quick retry; the next progress event clears it.
            job.state = 'retrying';
            job.error = classify(error).kind;
            onChange();
          }
          return retry;
        },
        onProgress: (sent) => {
          job.sent = sent;
          if (job.state !== 'sending') job.state = 'sending';
          job.error = null;
          onChange();
        },
        onSuccess: () => {
          job.sent = job.size;
          job.state = 'done';
          onChange();
          done();
        },
        onError: (error) => {
          const why = classify(error);
          job.error = why.kind;
          if (why.retry && !stopped) {
            // Out of quick retries: wait longer, then continue from where
            // the server stands; this goes on until the line comes back.
            job.state = 'retrying';
            onChange();
            const again = () => {
              window.removeEventListener('online', again);
              clearTimeout(timer);
              if (!stopped) {
                upload.start();
                return;
              }
              // Another file found the link expired meanwhile: give up too.
              job.state = 'failed';
              onChange();
              done();
            };
            const timer = setTimeout(again, UNREACHABLE_PAUSE_MS);
            window.addEventListener('online', again);
            return;
          }
          job.state = 'failed';
          if (why.stopAll) stopped = true;
          onChange();
          done();
        },
      });
      upload.findPreviousUploads()
        .then((previous) => {
          if (previous.length > 0) upload.resumeFromPreviousUpload(previous[0]);
        })
        .catch(() => {})
        .finally(() => {
          if (!stopped) upload.start();
          else done();
        });
    });

    launch();
  });
}

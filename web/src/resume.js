// What this browser keeps so that an upload continues after the tab was
// closed: for each unfinished file, only the address of its upload on the
// server (`/tus/…`, which is useless without the token), filed under a
// fingerprint. The fingerprint is a SHA-256 over the case key (itself a hash
// of the token), the file's path, size and modification time, so a shared
// family computer's storage shows neither the file names nor the token.
// tus-js-client's own storage would keep the metadata (the file name) too,
// so the page hands it this one instead. A case's entries are removed once
// its receipt shows that everything arrived.
const PREFIX = 'casegate.resume.';
/** What tus-js-client's default storage filed under, in pages before this one. */
const OLD_PREFIX = 'tus::casegate::';

function keys(prefix) {
  const found = [];
  try {
    for (let i = 0; i < localStorage.length; i += 1) {
      const key = localStorage.key(i) || '';
      if (key.startsWith(prefix)) found.push(key);
    }
  } catch {
    // Storage disabled: nothing kept, nothing to resume.
  }
  return found;
}

function remove(key) {
  try {
    localStorage.removeItem(key);
  } catch {
    // Storage disabled.
  }
}

/** Upload addresses filed under `prefix`, as tus-js-client expects them. */
function uploads(prefix) {
  const found = [];
  for (const key of keys(prefix)) {
    let url = null;
    try {
      url = new URL(localStorage.getItem(key) || '', location.href);
    } catch {
      // Not an address: ignored.
    }
    // Only an upload on this gateway is ever resumed.
    if (url && url.origin === location.origin && url.pathname.startsWith('/tus/')) {
      found.push({ uploadUrl: url.href, urlStorageKey: key });
    }
  }
  return found;
}

async function hex(text) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The fingerprint a file's unfinished upload is filed under. */
export function fingerprint(caseKey, job) {
  return hex([caseKey, job.path, job.size, job.file.lastModified].join('\u0000'));
}

/** A tus-js-client `urlStorage` for one case. */
export function resumeStorage(caseKey) {
  const prefix = `${PREFIX}${caseKey}.`;
  return {
    findAllUploads: async () => uploads(prefix),
    findUploadsByFingerprint: async (print) => uploads(`${prefix}${print}`),
    removeUpload: async (key) => remove(key),
    addUpload: async (print, upload) => {
      const key = `${prefix}${print}`;
      try {
        localStorage.setItem(key, upload.uploadUrl);
        return key;
      } catch {
        // Full or disabled: this upload cannot resume after a reload.
        return null;
      }
    },
  };
}

/** The number of this case's uploads this browser can continue. */
export function resumableCount(caseKey) {
  return keys(`${PREFIX}${caseKey}.`).length;
}

/** Forgets this case's unfinished uploads. */
export function forgetCase(caseKey) {
  for (const key of keys(`${PREFIX}${caseKey}.`)) remove(key);
}

/** Removes what older pages kept (tus-js-client's entries carry the file name). */
export function forgetOldEntries() {
  for (const key of keys(OLD_PREFIX)) remove(key);
}

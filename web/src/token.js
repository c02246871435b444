// The patient's upload token. It arrives in the link's fragment
// (`/upload#token=cgu_…`), which browsers never send to a server; the page
// removes it from the address bar at once (so it is not left in history,
// bookmarks or a screenshot) and keeps it in sessionStorage only, which
// lives as long as the tab. It travels only as `Authorization: Bearer`.
const KEY = 'casegate.upload-token';

/** The token from the link (moved out of the address bar), else from this tab's storage. */
export function takeToken() {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ''));
  const fromLink = (fragment.get('token') || '').trim();
  if (location.hash) {
    history.replaceState(history.state, '', location.pathname + location.search);
  }
  try {
    if (fromLink) {
      sessionStorage.setItem(KEY, fromLink);
      return fromLink;
    }
    return sessionStorage.getItem(KEY);
  } catch {
    return fromLink || null;
  }
}

/**
 * A name for the case that is not the token: the first 128 bits of its
 * SHA-256, used to keep this case's resumable uploads apart from other
 * cases' in the browser's storage.
 */
export async function caseKey(token) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token));
  return Array.from(new Uint8Array(digest).slice(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
}

// The page's languages: one message file per language (web/messages/),
// bundled at build time. Every text the patient sees comes from them; this
// module picks the language (the browser's preference, or the patient's
// choice), fills the page, and formats numbers, sizes, times and dates the
// way that language writes them.
import en from '../messages/en.json';
import zhCN from '../messages/zh-CN.json';
import hi from '../messages/hi.json';
import es from '../messages/es.json';
import ar from '../messages/ar.json';
import ru from '../messages/ru.json';

export const LANGUAGES = { en, 'zh-CN': zhCN, hi, es, ar, ru };
const RIGHT_TO_LEFT = new Set(['ar']);
const CHOICE_KEY = 'casegate.language';

let current = 'en';

/** The first of the browser's preferred languages that the page has. */
export function preferred(languages) {
  const codes = Object.keys(LANGUAGES);
  for (const wanted of languages) {
    const lower = String(wanted).toLowerCase();
    const exact = codes.find((c) => c.toLowerCase() === lower);
    if (exact) return exact;
    const base = lower.split('-')[0];
    const sameBase = codes.find((c) => c.toLowerCase().split('-')[0] === base);
    if (sameBase) return sameBase;
  }
  return 'en';
}

/** The language to start in: the patient's earlier choice, else the browser's. */
export function initialLanguage() {
  let saved = null;
  try {
    saved = localStorage.getItem(CHOICE_KEY);
  } catch {
    // Storage may be disabled; the browser's preference then decides.
  }
  if (saved && saved in LANGUAGES) return saved;
  return preferred(navigator.languages || [navigator.language || 'en']);
}

export function language() {
  return current;
}

/** Switches the page to `code` and remembers the choice. */
export function setLanguage(code, remember) {
  current = code in LANGUAGES ? code : 'en';
  const root = document.documentElement;
  root.lang = current;
  root.dir = RIGHT_TO_LEFT.has(current) ? 'rtl' : 'ltr';
  if (remember) {
    try {
      localStorage.setItem(CHOICE_KEY, current);
    } catch {
      // Not remembered; nothing else depends on it.
    }
  }
  for (const el of document.querySelectorAll('[data-t]')) {
    el.textContent = t(el.dataset.t);
  }
  document.title = t('title');
}

function lookup(messages, key) {
  return key.split('.').reduce((node, part) => (node == null ? undefined : node[part]), messages);
}

/**
 * The message `key` in the current language (English if missing), with
 * `{name}` placeholders filled from `params`; a message with plural forms
 * is chosen by `params.n`.
 */
export function t(key, params = {}) {
  let message = lookup(LANGUAGES[current], key) ?? lookup(en, key) ?? key;
  if (typeof message === 'object') {
    const form = new Intl.PluralRules(current).select(params.n ?? 0);
    message = message[form] ?? message.other;
  }
  return message.replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in params)) return whole;
    const value = params[name];
    return typeof value === 'number' ? number(value) : String(value);
  });
}

/** A plural message for a count, e.g. plural('images', 1843) → "1,843 images". */
export function plural(key, n) {
  return t(key, { n });
}

export function number(n) {
  return new Intl.NumberFormat(current).format(n);
}

/** A byte count as the patient reads it: "2.1 GB", "350 KB". */
export function size(bytes) {
  const units = ['byte', 'kilobyte', 'megabyte', 'gigabyte', 'terabyte'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return new Intl.NumberFormat(current, {
    style: 'unit',
    unit: units[unit],
    unitDisplay: unit === 0 ? 'long' : 'short',
    maximumFractionDigits: value < 10 && unit > 0 ? 1 : 0,
  }).format(value);
}

export function percent(fraction) {
  return new Intl.NumberFormat(current, { style: 'percent', maximumFractionDigits: 0 }).format(fraction);
}

/** A rough duration: "3 minutes", "1 hour", "40 seconds". */
export function duration(seconds) {
  const [value, unit] =
    seconds >= 5400 ? [Math.round(seconds / 3600), 'hour']
      : seconds >= 90 ? [Math.round(seconds / 60), 'minute']
        : [Math.max(5, Math.round(seconds / 5) * 5), 'second'];
  return new Intl.NumberFormat(current, { style: 'unit', unit, unitDisplay: 'long' }).format(value);
}

export function dateTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return new Intl.DateTimeFormat(current, { dateStyle: 'long', timeStyle: 'short' }).format(date);
}

/** A DICOM date (YYYYMMDD) as a date in the current language, or null. */
export function dicomDate(value) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(value || '');
  if (!m) return null;
  const date = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return new Intl.DateTimeFormat(current, { dateStyle: 'medium', timeZone: 'UTC' }).format(date);
}

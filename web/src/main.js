// The upload page: check the link, let the patient choose files, show what
// will be sent, send it, and show the receipt. The steps live in their own
// modules (token, api, scan, sender); this one holds the page's state and
// draws it, in the patient's language.
import { LANGUAGES, initialLanguage, setLanguage, language, t, plural, number, size, percent, duration, dateTime, dicomDate } from './i18n.js';
import { takeToken, caseKey as caseKeyOf } from './token.js';
import { readCaseRetrying, arrived, sentByPatient } from './api.js';
import { fromInput, fromDrop, inspect, studies } from './scan.js';
import { send } from './sender.js';
import { resumableCount, forgetCase, forgetOldEntries } from './resume.js';
import { sha256File } from './hash.js';
import { byId, clear, el, pathText, show } from './dom.js';

const CATEGORY_CHOICES = [
  'pathology_report', 'pathology_slides', 'imaging_report', 'molecular_report', 'lab_results',
  'operative_note', 'endoscopy_report', 'discharge_summary', 'treatment_history',
  'medication_list', 'clinic_note', 'consent', 'patient_questions', 'other',
];

const state = {
  token: null,
  caseKey: null,
  manifest: null,
  /** The link's problem, a key of `error_…`, or null. */
  linkError: null,
  /** Every chosen file worth sending: `{ file, path, size, dicom, category }`. */
  items: [],
  /** Folders being read or files being hashed; Send waits for them. */
  reading: 0,
  skipped: [],
  /** Files of the CD's viewer program, left out. */
  viewer: [],
  unreadable: [],
  phase: 'checking', // checking | choosing | preparing (Send checks what arrived) | sending | done | closed
  jobs: [],
  startedAt: 0,
  rate: null,
  lastSample: null,
  noticeKey: null,
  noticeParams: {},
};

function notice(key, params = {}) {
  state.noticeKey = key;
  state.noticeParams = params;
  drawNotice();
}

function drawNotice() {
  const box = byId('notice');
  show(box, Boolean(state.noticeKey));
  // The box is role=alert: write it only when its text changes, or a screen
  // reader announces the same message again at every progress redraw.
  const text = state.noticeKey ? t(state.noticeKey, state.noticeParams) : '';
  if (box.textContent !== text) box.textContent = text;
}

// ---- choosing -------------------------------------------------------------

const readingSaid = { at: 0, kind: null };

/**
 * The visible line saying what the page is reading, redrawn per file; for
 * screen readers the same text at most every ANNOUNCE_MS, and at once when
 * what is being done changes (a CD's thousands of files must not queue
 * thousands of announcements).
 */
function setReading(text, kind) {
  byId('reading').textContent = text;
  const now = performance.now();
  if (kind === readingSaid.kind && now - readingSaid.at < ANNOUNCE_MS) return;
  readingSaid.at = now;
  readingSaid.kind = kind;
  byId('reading-announce').textContent = text;
}

/** Adds chosen files (not yet inspected) to the list, replacing same paths. */
async function add(chosen) {
  if (state.phase !== 'choosing' || chosen.length === 0) return;
  const reading = byId('reading');
  const sendButton = byId('send');
  state.reading += 1;
  sendButton.disabled = true;
  show(reading, true);
  const found = await inspect(chosen, (done, total) => {
    setReading(t('reading', { done, total }), 'inspect');
  });
  await hashCandidates(found.items);
  state.reading -= 1;
  sendButton.disabled = state.reading > 0;
  show(reading, state.reading > 0);
  const byPath = new Map(state.items.map((i) => [i.path, i]));
  for (const item of found.items) byPath.set(item.path, item);
  state.items = Array.from(byPath.values()).sort((a, b) => a.path.localeCompare(b.path));
  state.skipped.push(...found.skipped);
  state.viewer.push(...found.viewer);
  state.unreadable.push(...found.unreadable);
  if (found.unreadable.length > 0) notice('error_unreadable', { name: found.unreadable[0] });
  drawChoosing();
}

/**
 * Adds what was dropped: a dropped folder is walked first, which on a CD
 * can take a while, so the page counts the files found meanwhile and Send
 * waits.
 */
async function addDropped(dataTransfer) {
  if (state.phase !== 'choosing') return;
  const reading = byId('reading');
  const found = (n) => {
    setReading(t('reading_folder', { files: plural('files', n) }), 'walk');
  };
  // Taken now: the drop's entries are gone once the event is over.
  const walking = fromDrop(dataTransfer, found);
  state.reading += 1;
  byId('send').disabled = true;
  show(reading, true);
  found(0);
  let chosen = [];
  try {
    chosen = await walking;
  } finally {
    state.reading -= 1;
    byId('send').disabled = state.reading > 0;
    show(reading, state.reading > 0);
  }
  await add(chosen);
}

/**
 * Hashes the chosen files that have the size of a received file, showing
 * how far it got: a file counts as arrived only when its SHA-256 matches,
 * never by name and size alone.
 */
async function hashCandidates(items) {
  const bySize = arrived(state.manifest);
  const todo = items.filter((i) => i.sha256 === undefined && bySize.has(i.size));
  if (todo.length === 0) return;
  const reading = byId('reading');
  const total = todo.reduce((n, i) => n + i.size, 0);
  let done = 0;
  const report = () => {
    setReading(t('checking_arrived', { done: size(done), total: size(total) }), 'hash');
  };
  show(reading, true);
  report();
  for (const item of todo) {
    try {
      item.sha256 = await sha256File(item.file, (n) => {
        done += n;
        report();
      });
    } catch {
      // Unreadable now: it is sent (and reported) like any file not yet arrived.
      item.sha256 = null;
    }
  }
}

function alreadyArrived(item) {
  const same = arrived(state.manifest).get(item.size);
  return Boolean(same && item.sha256 && same.hashes.has(item.sha256));
}

function drawSummary() {
  const toSend = state.items.filter((i) => !alreadyArrived(i));
  const dicom = toSend.filter((i) => i.dicom);
  const docs = toSend.filter((i) => !i.dicom);
  const groups = studies(dicom);
  const seriesCount = groups.reduce((n, g) => n + g.series.size, 0);
  const parts = [];
  if (dicom.length > 0) {
    parts.push(t('summary_images', {
      studies: plural('study', groups.length),
      series: plural('series', seriesCount),
      images: plural('images', dicom.length),
      size: size(dicom.reduce((n, i) => n + i.size, 0)),
    }));
  }
  if (docs.length > 0) {
    parts.push(t('summary_documents', {
      documents: plural('documents', docs.length),
      size: size(docs.reduce((n, i) => n + i.size, 0)),
    }));
  }
  byId('summary-text').textContent = parts.length > 0 ? parts.join(t('summary_separator')) : t('summary_nothing');

  const list = clear(byId('studies'));
  for (const g of groups) {
    const date = dicomDate(g.date);
    const params = {
      date,
      modalities: Array.from(g.modalities).join(', ') || '?',
      series: plural('series', g.series.size),
      images: plural('images', g.images),
    };
    list.append(el('li', {}, t(date ? 'study_line' : 'study_line_nodate', params)));
  }

  show(byId('documents'), docs.length > 0);
  const docList = clear(byId('document-list'));
  docs.forEach((item, n) => {
    const id = `category-${n}`;
    const select = el('select', { id, 'aria-label': t('category_for', { name: item.path }) });
    for (const c of CATEGORY_CHOICES) {
      select.append(el('option', { value: c, selected: c === item.category }, t(`categories.${c}`)));
    }
    select.addEventListener('change', () => {
      item.category = select.value;
    });
    docList.append(el('li', {}, [
      el('span', { class: 'name', dir: 'auto', title: item.path }, pathText(item.path)),
      el('span', { class: 'size' }, size(item.size)),
      select,
    ]));
  });

  const skipped = byId('skipped');
  show(skipped, state.skipped.length > 0);
  skipped.textContent = t('skipped', { files: plural('files', state.skipped.length) });
  const viewer = byId('viewer');
  show(viewer, state.viewer.length > 0);
  viewer.textContent = t('skipped_viewer', { files: plural('files', state.viewer.length) });
  const already = state.items.length - toSend.length;
  show(byId('already'), already > 0);
  byId('already').textContent = t('already', { files: plural('files', already) });
}

/**
 * Numbers the steps as they are shown: "Check what you are sending"
 * appears only once files are chosen, so until then the questions are
 * step 2, not 3. (Text, not a CSS counter: chromium leaves counters out of
 * what screen readers read.)
 */
function numberSteps() {
  let n = 0;
  for (const heading of document.querySelectorAll('h2.step')) {
    const shown = !heading.closest('[hidden]');
    if (shown) n += 1;
    heading.querySelector('.step-number').textContent = shown ? t('step_number', { n: number(n) }) : '';
  }
}

function drawChoosing() {
  const choosing = state.phase === 'choosing' || state.phase === 'preparing';
  show(byId('pick'), choosing);
  show(byId('summary'), choosing && state.items.length > 0);
  show(byId('questions-box'), choosing);
  show(byId('send-row'), choosing);
  if (choosing && state.items.length > 0) drawSummary();
  const resumable = state.caseKey ? resumableCount(state.caseKey) : 0;
  const note = byId('resume-note');
  show(note, choosing && resumable > 0 && state.items.length === 0);
  note.textContent = t('resume_note', { files: plural('files', resumable) });
  numberSteps();
}

// ---- sending --------------------------------------------------------------

// The questions as typed so far, kept in this tab's sessionStorage (never
// localStorage) so a reload does not lose them; removed once they arrived.
// Filed under the case, so a draft typed for one link never appears (and
// is never sent) under another link opened in the same tab.
const draftKey = () => `casegate.questions-draft.${state.caseKey}`;

function keepDraft() {
  if (!state.caseKey) return;
  try {
    const text = byId('questions').value;
    if (text) sessionStorage.setItem(draftKey(), text);
    else sessionStorage.removeItem(draftKey());
  } catch {
    // Storage disabled: the text stays on the page only.
  }
}

function restoreDraft() {
  try {
    const text = sessionStorage.getItem(draftKey());
    if (text && !byId('questions').value) byId('questions').value = text;
  } catch {
    // Storage disabled.
  }
}

/** Clears the box and the kept draft once the questions arrived. */
function questionsArrived() {
  byId('questions').value = '';
  keepDraft();
}

function questionsFile() {
  const text = byId('questions').value.trim();
  if (!text) return null;
  const name = t('questions_filename');
  const file = new File([`${text}\n`], name, { type: 'text/plain;charset=utf-8' });
  return { file, path: name, size: file.size, dicom: null, category: 'patient_questions', questions: true };
}

async function startSending() {
  if (state.reading > 0 || state.phase !== 'choosing') return;
  // While Send checks what already arrived, nothing can be added or typed:
  // it would be left out of this send, and the questions box cleared.
  state.phase = 'preparing';
  byId('questions').readOnly = true;
  const questions = questionsFile();
  state.reading += 1;
  byId('send').disabled = true;
  await hashCandidates(questions ? [...state.items, questions] : state.items);
  state.reading -= 1;
  byId('send').disabled = false;
  byId('questions').readOnly = false;
  state.phase = 'choosing';
  show(byId('reading'), state.reading > 0);
  const jobs = state.items.filter((i) => !alreadyArrived(i)).map((i) => ({ ...i }));
  // The questions go first: a stalled upload of big images never holds them back.
  if (questions && !alreadyArrived(questions)) jobs.unshift(questions);
  else if (questions) questionsArrived();
  for (const job of jobs) Object.assign(job, { state: 'waiting', sent: 0, error: null });
  if (jobs.length === 0 && state.items.length === 0) {
    notice('send_nothing');
    return;
  }
  notice(null);
  state.jobs = jobs;
  state.phase = 'sending';
  state.startedAt = performance.now();
  state.lastSample = null;
  state.rate = null;
  drawChoosing();
  show(byId('progress'), true);
  drawProgress();
  byId('progress-title').focus();
  const ticker = setInterval(drawProgress, 1000);
  await send({ token: state.token, caseKey: state.caseKey, jobs, onChange: scheduleProgress });
  clearInterval(ticker);
  drawProgress();
  await finish();
}

let progressQueued = false;
function scheduleProgress() {
  if (progressQueued) return;
  progressQueued = true;
  requestAnimationFrame(() => {
    progressQueued = false;
    drawProgress();
  });
}

// What a screen reader hears of the progress: the total at most every
// ANNOUNCE_MS, and at once when something changes that matters (a file
// stuck or failing, everything sent), not the redraw of every second.
const ANNOUNCE_MS = 10000;
const announced = { at: 0, key: null };

function announce(text, key) {
  const now = performance.now();
  if (key === announced.key && now - announced.at < ANNOUNCE_MS) return;
  announced.at = now;
  announced.key = key;
  byId('total-announce').textContent = text;
}

/** Bytes per second, smoothed, from samples at least a second apart. */
function sampleRate(sent) {
  const now = performance.now();
  const last = state.lastSample;
  if (!last) {
    state.lastSample = { now, sent };
    return;
  }
  const seconds = (now - last.now) / 1000;
  if (seconds < 1) return;
  const rate = Math.max(0, (sent - last.sent) / seconds);
  state.rate = state.rate == null ? rate : state.rate * 0.8 + rate * 0.2;
  state.lastSample = { now, sent };
}

function drawProgress() {
  const jobs = state.jobs;
  const total = jobs.reduce((n, j) => n + j.size, 0);
  const sent = jobs.reduce((n, j) => n + Math.min(j.sent, j.size), 0);
  sampleRate(sent);
  const fraction = total > 0 ? sent / total : 1;
  byId('total-label').textContent = t('total_label');
  byId('total').value = fraction;
  const elapsed = (performance.now() - state.startedAt) / 1000;
  let left = '';
  if (state.phase === 'sending' && sent < total) {
    left = state.rate > 0 && elapsed > 3 ? t('time_left', { time: duration((total - sent) / state.rate) }) : t('time_left_unknown');
  }
  const totalText = [t('total_text', { sent: size(sent), size: size(total), percent: percent(fraction) }), left]
    .filter(Boolean).join(' · ');
  byId('total-text').textContent = totalText;
  const troubled = jobs.filter((j) => j.state === 'retrying' || j.state === 'failed').length;
  announce(totalText, `${state.phase}:${troubled}:${jobs.filter((j) => j.state === 'done').length === jobs.length}`);

  // The files in flight or in trouble; a long CD list would bury them.
  const shown = jobs.filter((j) => j.state === 'sending' || j.state === 'retrying' || j.state === 'failed');
  const list = clear(byId('file-progress'));
  for (const job of shown.slice(0, 50)) {
    const bar = el('progress', { max: job.size || 1, value: Math.min(job.sent, job.size), 'aria-label': job.path });
    const status = job.state === 'failed' ? t(`error_${job.error}`, { name: job.path }) : t(`file_${job.state}`);
    list.append(el('li', { class: job.state }, [
      el('span', { class: 'name', dir: 'auto', title: job.path }, pathText(job.path)),
      bar,
      el('span', { class: 'status' }, status),
    ]));
  }
  const retrying = jobs.find((j) => j.state === 'retrying');
  if (state.phase === 'sending') {
    if (retrying) notice(retrying.error === 'busy' ? 'error_busy' : 'error_unreachable');
    else if (state.noticeKey === 'error_unreachable' || state.noticeKey === 'error_busy') notice(null);
  }
}

// ---- receipt --------------------------------------------------------------

async function finish() {
  const failed = state.jobs.filter((j) => j.state !== 'done');
  const stopper = failed.find((j) => j.error === 'expired_during' || j.error === 'link_unknown');
  // The receipt, and what the next Send leaves out, come from the manifest
  // as it is now: never from the one read when the page opened.
  const answer = await readCaseRetrying(state.token, (kind) => {
    notice(kind === 'unreachable' ? 'error_unreachable' : 'error_busy');
  });
  notice(null);
  if (answer.manifest) state.manifest = answer.manifest;
  drawForYou();
  // Nothing of this case is left unfinished (this send's files, or an
  // earlier send's still on the server): nothing is kept in the browser.
  const unfinished = (state.manifest?.files ?? []).some((f) => f.state === 'uploading');
  if (failed.length === 0 && !unfinished) forgetCase(state.caseKey);
  if (state.jobs.some((j) => j.questions && j.state === 'done')) questionsArrived();
  state.phase = 'done';
  if (stopper) notice(`error_${stopper.error}`);
  else if (failed.length > 0) notice('receipt_some_failed', { files: plural('files', failed.length) });
  drawReceipt();
  // The progress heading that had the focus is hidden now.
  byId('receipt-title').focus();
}

function drawReceipt() {
  const done = state.phase === 'done';
  show(byId('receipt'), done);
  if (!done) return;
  const files = sentByPatient(state.manifest)
    .filter((f) => f.state === 'complete' || f.state === 'flagged')
    .sort((a, b) => a.filename.localeCompare(b.filename));
  byId('receipt-text').textContent = t('receipt_text', { files: plural('files', files.length) });
  const expiry = state.manifest?.upload_expires_at;
  byId('receipt-expiry').textContent = expiry ? t('receipt_expiry', { date: dateTime(expiry) }) : '';
  const body = clear(byId('receipt-table').tBodies[0]);
  for (const f of files) {
    body.append(el('tr', {}, [
      el('td', { class: 'name', dir: 'auto' }, pathText(f.filename)),
      el('td', { class: 'size' }, size(f.size)),
      el('td', { class: 'sha', dir: 'ltr' }, f.sha256 || ''),
    ]));
  }
  byId('progress').hidden = state.jobs.every((j) => j.state === 'done');
}

// ---- start ----------------------------------------------------------------

function redraw() {
  setLanguage(language(), false);
  drawNotice();
  drawChoosing();
  if (state.phase === 'sending' || state.phase === 'done') drawProgress();
  drawReceipt();
  drawForYou();
}

function wireLanguageSwitch() {
  const select = byId('lang');
  for (const [code, messages] of Object.entries(LANGUAGES)) {
    select.append(el('option', { value: code, lang: code, selected: code === language() }, messages._language_name));
  }
  select.addEventListener('change', () => {
    setLanguage(select.value, true);
    redraw();
  });
}

function wirePicking() {
  const files = byId('files');
  const folder = byId('folder');
  byId('choose-files').addEventListener('click', () => files.click());
  byId('choose-folder').addEventListener('click', () => folder.click());
  for (const input of [files, folder]) {
    input.addEventListener('change', () => {
      add(fromInput(input.files));
      input.value = '';
    });
  }
  const drop = byId('drop');
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    addDropped(event.dataTransfer);
  });
  // A file dropped beside the zone must not make the browser navigate away.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  byId('clear').addEventListener('click', () => {
    state.items = [];
    state.skipped = [];
    state.viewer = [];
    state.unreadable = [];
    notice(null);
    drawChoosing();
    // The button pressed is gone with the summary: on to choosing again.
    byId('choose-files').focus();
  });
  byId('send').addEventListener('click', () => startSending());
  byId('questions').addEventListener('input', keepDraft);
  byId('print').addEventListener('click', () => window.print());
  byId('more').addEventListener('click', () => {
    // After a failure the same files stay chosen: what arrived is left out
    // of the next Send, the rest is tried again.
    if (state.jobs.every((j) => j.state === 'done')) state.items = [];
    state.skipped = [];
    state.viewer = [];
    state.jobs = [];
    state.phase = 'choosing';
    notice(null);
    show(byId('receipt'), false);
    show(byId('progress'), false);
    drawChoosing();
    byId('choose-files').focus();
  });
}

/**
 * Documents a coordinator released to the patient (the specialists'
 * opinion, translations), each with a download button; shown also once the
 * link can no longer upload. The manifest lists nothing else that is not
 * the patient's own.
 */
function drawForYou() {
  const files = (state.manifest?.files ?? [])
    .filter((f) => (f.source?.kind ?? 'patient') !== 'patient' && f.state === 'complete');
  show(byId('for-you'), files.length > 0);
  const list = clear(byId('for-you-list'));
  for (const f of files) {
    const button = el('button', { type: 'button', class: 'secondary' }, t('for_you_download'));
    button.setAttribute('aria-label', `${t('for_you_download')}: ${f.filename}`);
    button.addEventListener('click', () => downloadForYou(f, button));
    list.append(el('li', {}, [
      el('span', { class: 'name', dir: 'auto' }, [pathText(f.filename), ' ', el('span', { class: 'size' }, size(f.size))]),
      button,
    ]));
  }
}

/** Fetches a released document with the link's token and saves it under its name. */
async function downloadForYou(file, button) {
  button.disabled = true;
  try {
    const response = await fetch(`/api/v1/patient/files/${encodeURIComponent(file.file_id)}`, {
      headers: { Authorization: `Bearer ${state.token}` },
      cache: 'no-store',
    });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    const link = el('a', { href: url, download: file.filename, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch {
    notice('for_you_failed');
  } finally {
    button.disabled = false;
  }
}

async function checkLink() {
  state.token = takeToken();
  if (!state.token) return 'error_no_link';
  state.caseKey = await caseKeyOf(state.token);
  const answer = await readCaseRetrying(state.token, (kind) => {
    notice(kind === 'unreachable' ? 'error_unreachable' : 'error_busy');
  });
  notice(null);
  state.manifest = answer.manifest ?? null;
  const errors = {
    unknown: 'error_link_unknown',
    expired: 'error_link_expired',
  };
  return errors[answer.kind] ?? null;
}

async function main() {
  setLanguage(initialLanguage(), false);
  wireLanguageSwitch();
  wirePicking();
  forgetOldEntries();
  const problem = await checkLink();
  show(byId('loading'), false);
  drawForYou();
  if (problem) {
    state.phase = 'closed';
    notice(problem);
    // Nothing can continue under this link any more (a new link is a new
    // key): what this browser kept for it goes.
    if (state.caseKey && problem !== 'error_no_link') forgetCase(state.caseKey);
    return;
  }
  state.phase = 'choosing';
  restoreDraft();
  drawChoosing();
}

main();

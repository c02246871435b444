// Drives the patient upload page in Debian's chromium, as a patient would:
// open the link, choose a CD folder and documents, write a question, send,
// reload in the middle, choose the same files again, finish, read the
// receipt. Run by tests/api/upload_browser.rs, which starts the gateway,
// makes the files and checks the server's manifest afterwards.
//
// Environment:
//   CASEGATE_MODE        upload (default) | refused (a bad or expired link) |
//                        second-cd (CASEGATE_FILES { "first": dir, "second": dir }:
//                        two CDs with the same paths and sizes, one after the other) |
//                        languages (CASEGATE_EXPECT { "languages": [codes] }: the
//                        page in each, its script drawn with real glyphs) |
//                        drop (the CD folder and the documents dragged onto the page)
//   CASEGATE_LINK        the upload link, https://…/upload#token=…
//   CASEGATE_TOKEN       the token, to check it never appears in a request URL
//   CASEGATE_SERVER_CERT the gateway's certificate (PEM): trusted by its SPKI
//   CASEGATE_FILES       JSON: { "folder": dir, "documents": [paths] }
//   CASEGATE_LANG        browser language (en, ar, …)
//   CASEGATE_EXPECT      JSON: what the page must show (summary parts, categories,
//                        a notice); `offline: true` also takes the line down
//                        after the reload
//   CASEGATE_OUT         output directory (screenshots, result.json)
// Prints one line per step; exits non-zero on the first failed check.
import { chromium } from 'playwright-core';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

const env = process.env;
const mode = env.CASEGATE_MODE || 'upload';
const link = env.CASEGATE_LINK;
const token = env.CASEGATE_TOKEN;
const lang = env.CASEGATE_LANG || 'en';
const out = env.CASEGATE_OUT;
const expect = JSON.parse(env.CASEGATE_EXPECT || '{}');
mkdirSync(out, { recursive: true });

function check(condition, message) {
  if (!condition) {
    console.error(`FAILED: ${message}`);
    process.exit(1);
  }
}
const step = (text) => console.log(`[${lang}/${mode}] ${text}`);

/** base64(SHA-256(SubjectPublicKeyInfo)) of the gateway's certificate. */
function spkiHash(pemPath) {
  const cert = new X509Certificate(readFileSync(pemPath));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

// A fresh profile each run, so no earlier run's storage helps this one;
// removed at the end.
const profile = mkdtempSync(path.join(tmpdir(), 'casegate-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  locale: lang,
  viewport: { width: 900, height: 1000 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--ignore-certificate-errors-spki-list=${spkiHash(env.CASEGATE_SERVER_CERT)}`,
  ],
});
const requests = [];
context.on('request', (r) => requests.push({ method: r.method(), url: r.url(), headers: r.headers() }));
const page = context.pages()[0] || await context.newPage();
const consoleErrors = [];
page.on('pageerror', (e) => consoleErrors.push(String(e)));

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
/** Serious and critical accessibility violations on the page as it is now. */
async function axeCheck(label) {
  // Evaluated over the DevTools protocol, which the page's CSP (rightly)
  // does not govern; no script is injected into the page itself.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of bad) console.error(`axe ${label}: ${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  check(bad.length === 0, `axe found serious violations (${label})`);
  step(`axe: no serious violations (${label})`);
}

async function shot(name) {
  await page.screenshot({ path: path.join(out, `${name}.png`), fullPage: true });
}

function checkRequests() {
  for (const r of requests) {
    check(!r.url.includes(token), `the token appears in a request URL: ${r.method} ${r.url.replace(token, '<token>')}`);
    check(!(r.headers.referer || '').includes(token), 'the token appears in a Referer header');
    const origin = new URL(link).origin;
    check(r.url.startsWith(origin) || r.url.startsWith('data:'), `a request left the gateway: ${r.url}`);
  }
  step(`${requests.length} requests, none with the token in its URL, none to another site`);
}

/** The name chromium's own accessibility tree gives an element (what a screen reader reads). */
async function accessibleName(selector) {
  const cdp = await context.newCDPSession(page);
  try {
    const { root } = await cdp.send('DOM.getDocument');
    const { nodeId } = await cdp.send('DOM.querySelector', { nodeId: root.nodeId, selector });
    const { nodes } = await cdp.send('Accessibility.getPartialAXTree', { nodeId, fetchRelatives: false });
    return nodes[0]?.name?.value ?? '';
  } finally {
    await cdp.detach();
  }
}

const focusedId = () => page.evaluate(() => document.activeElement && document.activeElement.id);

/** Counts from now on how often each element's text changes (window.changes[id]). */
async function countChanges(ids) {
  await page.evaluate((list) => {
    window.changes = {};
    for (const id of list) {
      window.changes[id] = 0;
      const box = document.getElementById(id);
      new MutationObserver(() => { window.changes[id] += 1; }).observe(box, { childList: true, characterData: true, subtree: true });
    }
  }, ids);
}

/**
 * A screen reader hears the progress at most every ~10 s (plus changes of
 * state), while the visible text is redrawn every second.
 */
async function announcedSparingly(seconds) {
  const changes = await page.evaluate(() => window.changes);
  const live = await page.evaluate(() => Array.from(document.querySelectorAll('#progress [aria-live]'), (e) => e.id));
  check(JSON.stringify(live) === '["total-announce"]', `live regions in the progress: ${live}`);
  check(changes['total-text'] >= seconds - 2, `the visible progress changed ${changes['total-text']} times in ${seconds} s`);
  check(changes['total-announce'] <= seconds / 10 + 3, `the progress was announced ${changes['total-announce']} times in ${seconds} s`);
  step(`in ${seconds.toFixed(0)} s: progress redrawn ${changes['total-text']} times, announced ${changes['total-announce']} times`);
}

/** Every localStorage entry, as [key, value]. */
function storageDump() {
  return page.evaluate(() => Object.keys(localStorage).map((k) => [k, localStorage.getItem(k)]));
}

/** No file name, path part or tus-js-client entry (those carry the file name) in localStorage. */
function checkNoFileNames(stored) {
  for (const [k, v] of stored) {
    check(!k.startsWith('tus::'), `a tus-js-client entry with metadata: ${k}`);
    for (const name of ['HOSPITAL_CD', 'IM000', 'questions', 'Pathology', 'blood']) {
      check(!k.includes(name) && !v.includes(name), `localStorage holds a file name (${name}): ${k} = ${v}`);
    }
  }
}

/** Chooses the CD folder, then the documents, as a patient clicks through. */
async function chooseFiles(files) {
  // The page shows #reading from the change event until it has looked at
  // every file.
  await page.setInputFiles('#folder', files.folder);
  await page.locator('#reading').waitFor({ state: 'hidden' });
  await page.setInputFiles('#files', files.documents);
  await page.locator('#reading').waitFor({ state: 'hidden' });
  await page.locator('#summary').waitFor({ state: 'visible' });
}

async function refused() {
  await page.goto(link);
  await page.locator('#notice').waitFor({ state: 'visible' });
  const notice = await page.locator('#notice').innerText();
  check(notice.includes(expect.notice), `notice "${notice}" should include "${expect.notice}"`);
  check(await page.locator('#pick').isHidden(), 'the file chooser must stay hidden');
  check(!page.url().includes('#token'), 'the token left the address bar');
  await shot(`refused-${expect.name}`);
  await axeCheck(`refused ${expect.name}`);
  check(!requests.some((r) => new URL(r.url).pathname.startsWith('/tus')), 'a tus request was sent');
  for (const doc of expect.for_you ?? []) await downloadForYou(doc);
  checkRequests();
  step(`shows "${notice}" and sends nothing`);
}

/** A document released to the patient is listed and downloads whole, under its name. */
async function downloadForYou(doc) {
  const item = page.locator('#for-you-list li', { hasText: doc.filename });
  await item.waitFor({ state: 'visible' });
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    item.locator('button').click(),
  ]);
  check(download.suggestedFilename() === doc.filename, `saved as ${download.suggestedFilename()}`);
  const bytes = readFileSync(await download.path());
  const sha = createHash('sha256').update(bytes).digest('hex');
  check(sha === doc.sha256, `${doc.filename}: SHA-256 ${sha}, expected ${doc.sha256}`);
  step(`"${doc.filename}" listed for the patient and downloaded whole`);
}

async function upload() {
  const files = JSON.parse(env.CASEGATE_FILES);
  await page.goto(link);
  await page.locator('#pick').waitFor({ state: 'visible' });
  check(!page.url().includes('#token') && !page.url().includes(token), 'the token is still in the address bar');
  const dir = await page.evaluate(() => document.documentElement.dir);
  check(dir === (lang === 'ar' ? 'rtl' : 'ltr'), `dir=${dir} for ${lang}`);
  check(await page.evaluate(() => document.documentElement.lang) === lang, 'page language');
  step(`link opened, token gone from the address bar, dir=${dir}`);

  // Keyboard: the two choose buttons are reachable with Tab.
  const focused = [];
  await page.locator('body').focus();
  for (let i = 0; i < 4; i += 1) {
    await page.keyboard.press('Tab');
    focused.push(await page.evaluate(() => document.activeElement && document.activeElement.id));
  }
  check(focused.includes('choose-files') && focused.includes('choose-folder'), `tab order: ${focused}`);

  // The steps are numbered as shown: the questions are step 2 until the
  // summary (step 2) appears.
  const stepBefore = await accessibleName('#questions-box h2');
  check(stepBefore.startsWith('2. '), `before choosing, the questions heading reads "${stepBefore}"`);
  await chooseFiles(files);
  const stepAfter = await accessibleName('#questions-box h2');
  check(stepAfter.startsWith('3. '), `after choosing, the questions heading reads "${stepAfter}"`);
  step(`steps numbered as shown: "${stepBefore}", then "${stepAfter}"`);
  const summary = await page.locator('#summary-text').innerText();
  for (const part of expect.summary || []) check(summary.includes(part), `summary "${summary}" should include "${part}"`);
  const skipped = await page.locator('#skipped').innerText();
  check(skipped.length > 0, 'the DICOMDIR and system files are reported as left out');
  if (expect.viewer) {
    const viewer = await page.locator('#viewer').innerText();
    check(viewer.includes(expect.viewer), `"${viewer}" should include "${expect.viewer}"`);
    step(viewer);
  }
  // The categories suggested from the names.
  const categories = await page.locator('#document-list select').evaluateAll((s) => s.map((x) => x.value));
  check(JSON.stringify(categories) === JSON.stringify(expect.categories), `categories ${categories}`);
  await page.fill('#questions', expect.question);
  step(`summary: ${summary}`);
  await shot('summary');
  await axeCheck('summary');

  // Slow the line so the reload lands in the middle of the big file.
  const cdp = await context.newCDPSession(page);
  const throttle = (bytesPerSecond, offline = false) => cdp.send('Network.emulateNetworkConditions', {
    offline, latency: 20, downloadThroughput: -1, uploadThroughput: bytesPerSecond,
  });
  await throttle(3 * 1024 * 1024);
  await countChanges(['total-text', 'total-announce']);
  const sentAt = Date.now();
  await page.click('#send');
  await page.locator('#progress').waitFor({ state: 'visible' });
  check(await focusedId() === 'progress-title', `after Send the focus is on ${await focusedId()}, not the progress heading`);
  await page.waitForFunction(() => Number(document.getElementById('total').value) > 0.3, null, { timeout: 120000 });
  await page.waitForTimeout(1500);
  await announcedSparingly((Date.now() - sentAt) / 1000);
  await shot('progress');
  await axeCheck('progress');
  const before = Number(await page.locator('#total').getAttribute('value') || 0);
  step(`progress ${(before * 100).toFixed(0)} %: reloading the page in the middle`);

  await page.reload();
  await page.locator('#pick').waitFor({ state: 'visible' });
  const kept = await storageDump();
  if (before < 0.95) {
    // A file was cut off midway: the page says how to continue, and what it
    // kept for that is an upload address, not a file name.
    check(await page.locator('#resume-note').isVisible(), 'after a reload the page says how to continue');
    check(kept.some(([k]) => k.startsWith('casegate.resume.')), `nothing kept to resume: ${JSON.stringify(kept)}`);
  }
  checkNoFileNames(kept);
  step(`kept to resume: ${kept.filter(([k]) => k.startsWith('casegate.resume.')).length} upload addresses, no file names`);
  await chooseFiles(files);
  const already = await page.locator('#already').innerText();
  check(already.length > 0, 'files that arrived before the reload are recognised');
  await page.fill('#questions', expect.question);
  step(`after reload: "${already}"`);
  await throttle(3 * 1024 * 1024);
  await page.click('#send');

  if (expect.offline) {
    // The line drops: the page says so, waits, and continues by itself
    // when the browser is back online.
    await page.waitForTimeout(1000);
    step(`sending again: ${await page.locator('#total-text').innerText()}`);
    await throttle(3 * 1024 * 1024, true);
    await page.locator('#file-progress li.retrying').first().waitFor({ state: 'visible', timeout: 60000 });
    await page.locator('#notice').waitFor({ state: 'visible' });
    step(`offline: "${await page.locator('#notice').innerText()}"`);
    await shot('offline');
    await page.waitForTimeout(2000);
  }
  await throttle(-1);
  await page.locator('#receipt').waitFor({ state: 'visible', timeout: 300000 });
  const notice = await page.locator('#notice').isVisible() ? await page.locator('#notice').innerText() : '';
  check(notice === '', `a notice at the end: ${notice}`);
  check(await focusedId() === 'receipt-title', `at the receipt the focus is on ${await focusedId()}, not its heading`);
  const rows = await page.locator('#receipt-table tbody tr').evaluateAll((trs) => trs.map((tr) => ({
    filename: tr.cells[0].textContent, sha256: tr.cells[2].textContent,
  })));
  const expiry = await page.locator('#receipt-expiry').innerText();
  check(expiry.length > 0, 'the receipt shows until when the link works');
  await shot('receipt');
  await axeCheck('receipt');
  check(consoleErrors.length === 0, `page errors: ${consoleErrors}`);
  checkRequests();
  const uploads = requests.filter((r) => r.method === 'POST' && new URL(r.url).pathname.startsWith('/tus'));
  writeFileSync(path.join(out, 'result.json'), JSON.stringify({ receipt: rows, expiry, creations: uploads.length }, null, 2));
  step(`receipt: ${rows.length} files; ${uploads.length} uploads created`);
}

/** Records every text #reading shows, to check what the patient was told while waiting. */
async function watchReading() {
  await page.evaluate(() => {
    window.readingTexts = [];
    const box = document.getElementById('reading');
    new MutationObserver(() => window.readingTexts.push(box.textContent)).observe(box, { childList: true, characterData: true, subtree: true });
  });
}

/** Sends the folder `dir` on the open page and waits for the receipt; returns what #already said. */
async function sendFolder(dir) {
  await page.setInputFiles('#folder', dir);
  await page.locator('#reading').waitFor({ state: 'hidden' });
  await page.locator('#summary').waitFor({ state: 'visible' });
  const already = await page.locator('#already').isVisible() ? await page.locator('#already').innerText() : '';
  const summary = await page.locator('#summary-text').innerText();
  await page.click('#send');
  await page.locator('#receipt').waitFor({ state: 'visible', timeout: 300000 });
  return { already, summary };
}

/**
 * Two different CDs with the same paths and sizes, one after the other on
 * the same link: the second is not taken for the first.
 */
async function secondCd() {
  const files = JSON.parse(env.CASEGATE_FILES);
  await unreachableAtFirst();
  await draftSurvivesReload();
  await page.setInputFiles('#folder', files.first);
  await page.locator('#summary').waitFor({ state: 'visible' });
  await page.click('#clear');
  check(await page.locator('#summary').isHidden(), 'Remove all left the summary');
  check(await focusedId() === 'choose-files', `after Remove all the focus is on ${await focusedId()}`);
  const first = await sendFolder(files.first);
  step(`first CD and the questions: ${first.summary}`);
  await questionsWentFirst();
  await nothingLeftInStorage();
  await page.click('#more');
  check(await focusedId() === 'choose-files', `after Send more the focus is on ${await focusedId()}`);
  step('focus: Remove all and Send more lead to the file chooser');
  await watchReading();
  const second = await sendFolder(files.second);
  check(second.already === '', `the second CD was taken for the first: "${second.already}"`);
  for (const part of expect.summary || []) check(second.summary.includes(part), `summary "${second.summary}" should include "${part}"`);
  const texts = await page.evaluate(() => window.readingTexts);
  check(texts.some((x) => x.includes(expect.checking)), `no "${expect.checking}" while hashing: ${texts}`);
  step(`second CD: ${second.summary}; shown while hashing: "${texts.filter((x) => x.includes(expect.checking)).pop()}"`);
  await shot('second-cd-receipt');
  await nothingLeftInStorage();
  // The first CD once more: every file, the big one (hashed in slices by
  // the streamed path) included, is recognised as arrived by its SHA-256,
  // and nothing is uploaded again.
  await page.click('#more');
  const creates = () => requests.filter((r) => r.method === 'POST' && new URL(r.url).pathname === '/tus/').length;
  const before = creates();
  const again = await sendFolder(files.first);
  check(again.already.length > 0, 'the first CD chosen again is not recognised as arrived');
  check(creates() === before, `the first CD chosen again was uploaded again (${creates() - before} uploads)`);
  step(`first CD again: "${again.already}"`);
  check(consoleErrors.length === 0, `page errors: ${consoleErrors}`);
  checkRequests();
}

/** The gateway cannot be reached, then answers 503 twice: the page says so, waits and comes back by itself. */
async function unreachableAtFirst() {
  const manifest = '**/api/v1/patient/case';
  let asked = 0;
  await page.route(manifest, (route) => {
    asked += 1;
    if (asked === 1) return route.abort('connectionrefused');
    if (asked <= 3) {
      return route.fulfill({
        status: 503,
        headers: { 'Retry-After': '1' },
        contentType: 'application/problem+json',
        body: JSON.stringify({ type: 'about:blank', title: 'unavailable', status: 503, code: 'storage_unavailable' }),
      });
    }
    return route.continue();
  });
  await page.goto(link);
  await page.locator('#notice').waitFor({ state: 'visible' });
  const waiting = await page.locator('#notice').innerText();
  check(waiting.includes(expect.unreachable), `notice "${waiting}" should include "${expect.unreachable}"`);
  await shot('unreachable-at-load');
  await page.locator('#pick').waitFor({ state: 'visible', timeout: 60000 });
  check(await page.locator('#notice').isHidden(), 'the notice stays after the gateway answered');
  check(asked === 4, `the manifest was asked for ${asked} times, not 4`);
  await page.unroute(manifest);
  step(`"${waiting}" until the gateway answered (${asked} tries), no reload`);
}

/** What the patient typed is still there after a reload. */
async function draftSurvivesReload() {
  await page.fill('#questions', expect.question);
  await page.reload();
  await page.locator('#pick').waitFor({ state: 'visible' });
  const kept = await page.locator('#questions').inputValue();
  check(kept === expect.question, `after a reload the questions read "${kept}"`);
  step('the questions typed survive a reload');
}

/** The first upload created was the questions; the draft is gone once they arrived. */
async function questionsWentFirst() {
  const created = requests.filter((r) => r.method === 'POST' && new URL(r.url).pathname.startsWith('/tus'));
  const metadata = created[0]?.headers['upload-metadata'] || '';
  const name = Buffer.from(expect.questions_filename).toString('base64');
  check(metadata.split(',').includes(`filename ${name}`), `the first upload was not the questions: ${metadata}`);
  const draft = await page.evaluate(() => sessionStorage.getItem('casegate.questions-draft'));
  check(draft === null, 'the draft is still kept after the questions arrived');
  check(await page.locator('#questions').inputValue() === '', 'the questions box still holds what was sent');
  step('the questions went up first; the draft is gone');
}

/** After a receipt with everything arrived, the browser keeps nothing of the case and no file name. */
async function nothingLeftInStorage() {
  const stored = await storageDump();
  const caseKey = createHash('sha256').update(token).digest('hex').slice(0, 32);
  for (const [k, v] of stored) {
    check(!k.includes(caseKey) && !v.includes(caseKey), `localStorage keeps this case: ${k}`);
  }
  checkNoFileNames(stored);
  step(`localStorage after the receipt: ${JSON.stringify(stored.map(([k]) => k))}`);
}

/**
 * Whether the page's heading is drawn with real glyphs in the language's
 * script, not the empty boxes a browser shows when no installed font has
 * them: each of a few letters of the heading is drawn on a canvas in the
 * heading's font and compared with a code point no font has.
 */
function missingGlyphs() {
  return page.evaluate(() => {
    const h1 = document.querySelector('h1');
    const style = getComputedStyle(h1);
    const font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const draw = (c) => {
      const canvas = document.createElement('canvas');
      canvas.width = 80;
      canvas.height = 80;
      const g = canvas.getContext('2d');
      g.font = font;
      g.fillText(c, 10, 60);
      return Array.from(g.getImageData(0, 0, 80, 80).data).join(',');
    };
    const letters = [...new Set(Array.from(h1.textContent).filter((c) => /\p{L}/u.test(c) && c.codePointAt(0) > 0x24f))].slice(0, 6);
    const box = draw('\u{10FFFD}');
    return { letters: letters.join(''), missing: letters.filter((c) => draw(c) === box).join('') };
  });
}

/** The page in every language: its script drawn with real glyphs, a screenshot each. */
async function languages() {
  await page.goto(link);
  await page.locator('#pick').waitFor({ state: 'visible' });
  for (const code of expect.languages) {
    await page.selectOption('#lang', code);
    await page.waitForFunction((c) => document.documentElement.lang === c, code);
    const { letters, missing } = await missingGlyphs();
    check(missing === '', `${code}: no font draws "${missing}" (of "${letters}"); install one (e.g. fonts-lohit-deva for Hindi)`);
    await shot(`page-${code}`);
    step(`${code}: "${letters || 'Latin'}" drawn`);
  }
  await axeCheck(`language ${expect.languages[expect.languages.length - 1]}`);
}

/** Every file under `dir`, as { path: relative to dir's parent, b64 }. */
function readTree(dir) {
  const base = path.dirname(dir);
  return readdirSync(dir, { recursive: true })
    .map((rel) => path.join(dir, rel))
    .filter((full) => statSync(full).isFile())
    .map((full) => ({ path: path.relative(base, full), b64: readFileSync(full).toString('base64') }));
}

/**
 * Drops `files` (from readTree) on the drop zone as a folder. A real folder
 * drop cannot be made from a script (the entries of a synthetic
 * DataTransfer are null), so the drop event carries a DataTransfer whose
 * item returns a FileSystemEntry tree built here with the same interface
 * as the browser's (isFile/isDirectory, fullPath, file(), createReader()
 * whose readEntries answers in batches, asynchronously); the page's own
 * drop handler and folder walk run on it unchanged.
 */
async function dropFolder(files) {
  await page.evaluate((list) => {
    const later = (fn) => setTimeout(fn, 5);
    const root = { children: new Map() };
    for (const { path: p, b64 } of list) {
      const parts = p.split('/');
      let node = root;
      for (const part of parts.slice(0, -1)) {
        if (!node.children.has(part)) node.children.set(part, { children: new Map() });
        node = node.children.get(part);
      }
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      node.children.set(parts[parts.length - 1], { file: new File([bytes], parts[parts.length - 1]) });
    }
    const entry = (name, node, fullPath) => (node.file
      ? { isFile: true, isDirectory: false, name, fullPath, file: (ok) => later(() => ok(node.file)) }
      : {
        isFile: false,
        isDirectory: true,
        name,
        fullPath,
        createReader: () => {
          const children = Array.from(node.children, ([n, c]) => entry(n, c, `${fullPath}/${n}`));
          let next = 0;
          return {
            readEntries: (ok) => later(() => {
              ok(children.slice(next, next + 2));
              next += 2;
            }),
          };
        },
      });
    const [[topName, top]] = Array.from(root.children);
    const dataTransfer = { items: [{ kind: 'file', webkitGetAsEntry: () => entry(topName, top, `/${topName}`) }], files: [] };
    const drop = new Event('drop', { bubbles: true, cancelable: true });
    Object.defineProperty(drop, 'dataTransfer', { value: dataTransfer });
    document.getElementById('drop').dispatchEvent(drop);
  }, files);
}

/** Drops plain files with a real DataTransfer, as a browser does for files. */
async function dropFiles(paths) {
  const list = paths.map((p) => ({ name: path.basename(p), b64: readFileSync(p).toString('base64') }));
  await page.evaluate((files) => {
    const dataTransfer = new DataTransfer();
    for (const { name, b64 } of files) {
      dataTransfer.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, { type: 'application/pdf' }));
    }
    document.getElementById('drop').dispatchEvent(new DragEvent('drop', { bubbles: true, cancelable: true, dataTransfer }));
  }, list);
}

/** A CD folder and two documents dragged onto the page, then sent. */
async function dropped() {
  const files = JSON.parse(env.CASEGATE_FILES);
  await page.goto(link);
  await page.locator('#pick').waitFor({ state: 'visible' });
  await watchReading();
  await dropFolder(readTree(files.folder));
  await page.locator('#summary').waitFor({ state: 'visible' });
  await page.locator('#reading').waitFor({ state: 'hidden' });
  const texts = await page.evaluate(() => window.readingTexts);
  const walking = texts.filter((x) => x.includes(expect.reading_folder));
  check(walking.length > 1, `no "${expect.reading_folder}" count while the folder was walked: ${texts}`);
  // The CD may hold documents of its own: the dropped ones come on top.
  const before = await page.evaluate(() => document.querySelectorAll('#document-list select').length);
  await dropFiles(files.documents);
  await page.waitForFunction(
    (n) => document.querySelectorAll('#document-list select').length === n,
    before + files.documents.length,
  );
  await page.locator('#reading').waitFor({ state: 'hidden' });
  const summary = await page.locator('#summary-text').innerText();
  for (const part of expect.summary || []) check(summary.includes(part), `summary "${summary}" should include "${part}"`);
  check((await page.locator('#skipped').innerText()).length > 0, 'the DICOMDIR and system files are reported as left out');
  const viewer = await page.locator('#viewer').innerText();
  check(viewer.includes(expect.viewer), `"${viewer}" should include "${expect.viewer}"`);
  step(`dropped: ${summary}; while walking: "${walking.pop()}"`);
  await page.click('#send');
  await page.locator('#receipt').waitFor({ state: 'visible', timeout: 300000 });
  check(consoleErrors.length === 0, `page errors: ${consoleErrors}`);
  checkRequests();
}

try {
  if (mode === 'refused') await refused();
  else if (mode === 'drop') await dropped();
  else if (mode === 'languages') await languages();
  else if (mode === 'second-cd') await secondCd();
  else await upload();
} catch (error) {
  // What the patient saw when it went wrong.
  await shot('failure').catch(() => {});
  console.error(await page.locator('body').innerText().catch(() => ''));
  console.error(consoleErrors.join('\n'));
  throw error;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

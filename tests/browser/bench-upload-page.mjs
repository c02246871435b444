// Times the upload page sending files to a gateway, end to end as a patient
// sees it: from pressing Send to the receipt on screen. Used by
// bench/upload-page (a measurement, never a test).
//   node bench-upload-page.mjs LINK SERVER_CERT_PEM (--file PATH | --folder DIR)
// Prints the seconds taken on stdout, and on stderr the CPU seconds
// chromium's processes used meanwhile. CASEGATE_BENCH_CHROMIUM_ARGS adds
// chromium flags (e.g. --disable-http2 for HTTP/1.1 instead of h2).
import { chromium } from 'playwright-core';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const [link, certPath, kind, target] = process.argv.slice(2);
const cert = new X509Certificate(readFileSync(certPath));
const spki = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
const profile = mkdtempSync(path.join(tmpdir(), 'casegate-bench-chromium-'));
const extraArgs = (process.env.CASEGATE_BENCH_CHROMIUM_ARGS || '').split(' ').filter(Boolean);

/**
 * CPU seconds (user + system) used so far by the processes of this
 * profile's chromium, by process type (browser, renderer, the network
 * service, …).
 */
function chromiumCpuSeconds() {
  const byType = {};
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (!cmdline.some((a) => a.includes(profile))) continue;
      const type = (cmdline.find((a) => a.startsWith('--type=')) || '--type=browser').slice(7);
      const sub = (cmdline.find((a) => a.startsWith('--utility-sub-type=')) || '').split('.').pop();
      const name = sub ? `${type}:${sub}` : type;
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      byType[name] = (byType[name] || 0) + (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // The process ended meanwhile.
    }
  }
  return byType;
}

function cpuUsed(before, after) {
  const total = Object.values(after).reduce((a, b) => a + b, 0) - Object.values(before).reduce((a, b) => a + b, 0);
  const parts = Object.keys(after)
    .map((k) => [k, after[k] - (before[k] || 0)])
    .filter(([, v]) => v >= 0.1)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v.toFixed(1)}`);
  return `${total.toFixed(1)} s (${parts.join(', ')})`;
}
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--ignore-certificate-errors-spki-list=${spki}`,
    ...extraArgs,
  ],
});
try {
  const page = context.pages()[0] || await context.newPage();
  await page.goto(link);
  await page.locator('#pick').waitFor({ state: 'visible' });
  await page.setInputFiles(kind === '--folder' ? '#folder' : '#files', target);
  await page.locator('#reading').waitFor({ state: 'hidden', timeout: 600000 });
  await page.locator('#summary').waitFor({ state: 'visible' });
  const started = performance.now();
  const cpuBefore = chromiumCpuSeconds();
  await page.click('#send');
  await page.locator('#receipt').waitFor({ state: 'visible', timeout: 3600000 });
  const seconds = (performance.now() - started) / 1000;
  console.error(`chromium CPU ${cpuUsed(cpuBefore, chromiumCpuSeconds())} in ${seconds.toFixed(1)} s`);
  const notice = await page.locator('#notice').isVisible() ? await page.locator('#notice').innerText() : '';
  if (notice) throw new Error(`the page ended with a notice: ${notice}`);
  console.log(seconds.toFixed(3));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

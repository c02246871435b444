// Times the upload page sending files to a gateway, end to end as a patient
// sees it: from pressing Send to the receipt on screen. Used by
// bench/upload-page (a measurement, never a test).
//   node bench-upload-page.mjs LINK SERVER_CERT_PEM (--file PATH | --folder DIR)
// Prints the seconds taken on stdout.
import { chromium } from 'playwright-core';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const [link, certPath, kind, target] = process.argv.slice(2);
const cert = new X509Certificate(readFileSync(certPath));
const spki = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
const profile = mkdtempSync(path.join(tmpdir(), 'casegate-bench-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--ignore-certificate-errors-spki-list=${spki}`,
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
  await page.click('#send');
  await page.locator('#receipt').waitFor({ state: 'visible', timeout: 3600000 });
  const seconds = (performance.now() - started) / 1000;
  const notice = await page.locator('#notice').isVisible() ? await page.locator('#notice').innerText() : '';
  if (notice) throw new Error(`the page ended with a notice: ${notice}`);
  console.log(seconds.toFixed(3));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

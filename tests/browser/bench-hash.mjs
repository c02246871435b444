// Times the upload page's SHA-256 of one file in Debian's chromium (the
// code of web/src/hash.js, which tells a file already sent from a different
// one): a measurement, never a test.
//   node bench-hash.mjs FILE [ROUNDS]
// Needs `npm ci` here and in web/ (esbuild bundles web/src/hash.js).
// Prints MiB/s per round and checks the digest against Node's.
import { chromium } from 'playwright-core';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

const [file, rounds = '3'] = process.argv.slice(2);
const web = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../web');
const esbuild = createRequire(path.join(web, 'package.json'))('esbuild');
const bundle = await esbuild.build({
  entryPoints: [path.join(web, 'src/hash.js')], bundle: true, format: 'iife', globalName: 'hash', write: false,
});

const expected = await new Promise((resolve, reject) => {
  const h = createHash('sha256');
  createReadStream(file).on('data', (d) => h.update(d)).on('end', () => resolve(h.digest('hex'))).on('error', reject);
});
const mib = statSync(file).size / (1024 * 1024);
const profile = mkdtempSync(path.join(tmpdir(), 'casegate-bench-hash-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium', headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
try {
  const page = context.pages()[0] || await context.newPage();
  // A page of its own on an https origin (answered here, never sent to the
  // network): crypto.subtle exists only in a secure context.
  await page.route('https://bench.invalid/', (route) => route.fulfill({ contentType: 'text/html', body: '<input type="file" id="f">' }));
  await page.goto('https://bench.invalid/');
  await page.addScriptTag({ content: bundle.outputFiles[0].text });
  await page.setInputFiles('#f', file);
  for (let i = 0; i < Number(rounds); i += 1) {
    const { digest, ms } = await page.evaluate(async () => {
      const chosen = document.getElementById('f').files[0];
      const started = performance.now();
      const hex = await window.hash.sha256File(chosen);
      return { digest: hex, ms: performance.now() - started };
    });
    if (digest !== expected) throw new Error(`digest ${digest}, expected ${expected}`);
    console.log(`${mib.toFixed(0)} MiB in ${(ms / 1000).toFixed(2)} s: ${(mib / (ms / 1000)).toFixed(0)} MiB/s`);
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

// Builds the upload page into dist/: one HTML file and content-hashed
// assets, the bytes the gateway embeds. Deterministic: the same sources and
// lock file give the same bytes, so the committed dist/ can be checked with
// `npm run build && git diff --exit-code dist`.
import * as esbuild from 'esbuild';
import { readFile, writeFile, rm, mkdir } from 'node:fs/promises';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
const dist = path.join(here, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(path.join(dist, 'assets'), { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: ['src/main.js', 'src/style.css'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  outdir: 'dist/assets',
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  charset: 'utf8',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

// The hashed name of each entry point's output.
const outputs = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (meta.entryPoint) outputs[meta.entryPoint] = path.basename(file);
}
const template = await readFile(path.join(here, 'src/upload.html'), 'utf8');
const html = template
  .replace('{{script}}', `/upload/assets/${outputs['src/main.js']}`)
  .replace('{{style}}', `/upload/assets/${outputs['src/style.css']}`);
if (html.includes('{{')) throw new Error('upload.html: a placeholder was not filled');
await writeFile(path.join(dist, 'upload.html'), html);
console.log(`dist/upload.html, ${Object.values(outputs).join(', ')}`);

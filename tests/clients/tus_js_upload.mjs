// Uploads one file to casegate with tus-js-client (the stock JavaScript tus
// client, as used by Uppy), aborting mid-request after 512 KiB and resuming
// with a new Upload from the server's offset.
//
// usage: CASEGATE_TUS_URL=... CASEGATE_TOKEN=... NODE_EXTRA_CA_CERTS=ca.pem \
//        node tus_js_upload.mjs FILE NAME CATEGORY
// Prints the upload URL on success.
import fs from 'node:fs';
import { Upload } from 'tus-js-client';

const [, , file, name, category] = process.argv;
const data = fs.readFileSync(file);
const options = (extra) => ({
  endpoint: process.env.CASEGATE_TUS_URL,
  headers: { Authorization: `Bearer ${process.env.CASEGATE_TOKEN}` },
  chunkSize: 256 * 1024,
  metadata: { filename: name, category },
  retryDelays: [],
  ...extra,
});

const interruptedUrl = await new Promise((resolve, reject) => {
  let aborted = false;
  const upload = new Upload(data, options({
    onProgress(sent) {
      if (!aborted && sent >= 512 * 1024) {
        aborted = true;
        upload.abort().then(() => resolve(upload.url), reject);
      }
    },
    onError: reject,
    onSuccess: () => reject(new Error('finished before the interruption')),
  }));
  upload.start();
});

await new Promise((resolve, reject) => {
  const upload = new Upload(data, options({ uploadUrl: interruptedUrl, onSuccess: resolve, onError: reject }));
  upload.start();
});
console.log(interruptedUrl);

// What the patient chose, looked at before anything is sent: folders are
// walked, system files left out, DICOM recognised by its preamble (`DICM`
// at byte 128) and grouped by study and series from a few header fields,
// every other file given a suggested category from its name. Only the first
// 64 KiB of each file is read here, never a whole file.
import dicomParser from 'dicom-parser';
import rules from '../category-rules.json';

const HEADER_BYTES = 64 * 1024;
const READERS = 8;
const JUNK_NAMES = new Set(['dicomdir', '.ds_store', 'thumbs.db', 'desktop.ini']);

/** Whether a file is an operating system's or the CD's index rather than a record. */
export function isJunk(path) {
  const parts = path.toLowerCase().split('/');
  const name = parts[parts.length - 1];
  return JUNK_NAMES.has(name) || name.startsWith('._') || parts.includes('__macosx');
}

/** The suggested category for a non-DICOM file (web/category-rules.json). */
export function suggestCategory(path) {
  const lower = path.toLowerCase();
  for (const rule of rules.rules) {
    if (rule.keywords.some((k) => lower.includes(k.toLowerCase()))) return rule.category;
  }
  return 'other';
}

/** Files from a file input, with their path inside a chosen folder. */
export function fromInput(fileList) {
  return Array.from(fileList, (file) => ({ file, path: file.webkitRelativePath || file.name }));
}

function readAll(reader) {
  return new Promise((resolve, reject) => {
    const entries = [];
    const next = () => reader.readEntries((batch) => {
      if (batch.length === 0) resolve(entries);
      else {
        entries.push(...batch);
        next();
      }
    }, reject);
    next();
  });
}

async function walk(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\//, '') });
  } else if (entry.isDirectory) {
    for (const child of await readAll(entry.createReader())) await walk(child, out);
  }
}

/**
 * Files from a drop, folders walked. The entries must be taken while the
 * drop event runs, so this reads them first and walks afterwards.
 */
export async function fromDrop(dataTransfer) {
  const entries = Array.from(dataTransfer.items || [])
    .filter((item) => item.kind === 'file')
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (entries.length === 0 || entries.some((e) => !e)) return fromInput(dataTransfer.files);
  const out = [];
  const failed = [];
  for (const entry of entries) {
    try {
      await walk(entry, out);
    } catch {
      failed.push(entry.fullPath.replace(/^\//, ''));
    }
  }
  return Object.assign(out, { failed });
}

function text(dataSet, tag) {
  try {
    return (dataSet.string(tag) || '').trim();
  } catch {
    return '';
  }
}

/** The DICOM fields of a file, `null` if it is not DICOM; throws if unreadable. */
export async function readDicom(file) {
  const head = new Uint8Array(await file.slice(0, HEADER_BYTES).arrayBuffer());
  if (head.length < 132 || String.fromCharCode(...head.subarray(128, 132)) !== 'DICM') return null;
  let dataSet;
  try {
    dataSet = dicomParser.parseDicom(head, { untilTag: 'x7fe00010' });
  } catch (error) {
    // The 64 KiB slice ends inside the header, or an element is odd: what
    // was read before that point is still good.
    dataSet = error && error.dataSet;
  }
  if (!dataSet) return { study: '', series: '', modality: '', date: '' };
  return {
    study: text(dataSet, 'x0020000d'),
    series: text(dataSet, 'x0020000e'),
    modality: text(dataSet, 'x00080060'),
    date: text(dataSet, 'x00080020'),
  };
}

/**
 * Looks at every chosen file: returns `{ items, skipped, unreadable }`
 * where each item is `{ file, path, size, dicom, category }`.
 */
export async function inspect(chosen, onProgress) {
  const items = [];
  const skipped = [];
  const unreadable = [...(chosen.failed || [])];
  const todo = chosen.filter((c) => {
    if (isJunk(c.path)) {
      skipped.push(c.path);
      return false;
    }
    return true;
  });
  let done = 0;
  let index = 0;
  const worker = async () => {
    while (index < todo.length) {
      const { file, path } = todo[index];
      index += 1;
      try {
        const dicom = await readDicom(file);
        items.push({
          file,
          path,
          size: file.size,
          dicom,
          category: dicom ? 'imaging_dicom' : suggestCategory(path),
        });
      } catch {
        unreadable.push(path);
      }
      done += 1;
      onProgress(done, todo.length);
    }
  };
  await Promise.all(Array.from({ length: READERS }, worker));
  items.sort((a, b) => a.path.localeCompare(b.path));
  return { items, skipped, unreadable };
}

/** DICOM items grouped: `[{ study, date, modalities, series: Map, images, bytes }]`. */
export function studies(items) {
  const byStudy = new Map();
  for (const item of items) {
    if (!item.dicom) continue;
    const key = item.dicom.study || '?';
    if (!byStudy.has(key)) {
      byStudy.set(key, { study: key, date: item.dicom.date, modalities: new Set(), series: new Set(), images: 0, bytes: 0 });
    }
    const s = byStudy.get(key);
    if (item.dicom.modality) s.modalities.add(item.dicom.modality);
    s.series.add(item.dicom.series || '?');
    s.images += 1;
    s.bytes += item.size;
  }
  return Array.from(byStudy.values()).sort((a, b) => (a.date || '').localeCompare(b.date || ''));
}

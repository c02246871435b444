// What the patient chose, looked at before anything is sent: folders are
// walked, system files and the CD's viewer program left out
// (web/skip-rules.json), DICOM recognised by its preamble (`DICM`
// at byte 128) and grouped by study and series from a few header fields,
// every other file given a suggested category from its name. Only the first
// 64 KiB of each file is read here, never a whole file.
import dicomParser from 'dicom-parser';
import rules from '../category-rules.json';
import skipRules from '../skip-rules.json';

const HEADER_BYTES = 64 * 1024;
const READERS = 8;
const SYSTEM_FILES = new Set(skipRules.system_files);
const SYSTEM_FOLDERS = new Set(skipRules.system_folders);
const PROGRAM_EXTENSIONS = new Set(skipRules.program_extensions);
const PROGRAM_NAMES = new Set(skipRules.program_names);
const PROGRAM_FOLDERS = new Set(skipRules.program_folders);

const parts = (path) => path.toLowerCase().split('/');
const isProgramFolder = (name) => PROGRAM_FOLDERS.has(name);
/** A macOS application bundle: a program whatever it holds. */
const isBundle = (name) => name.endsWith('.app');

/** Whether a file is part of a program: by its extension, or `setup.ini` and the like. */
function isProgram(name) {
  const dot = name.lastIndexOf('.');
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const extension = dot > 0 ? name.slice(dot + 1) : '';
  return PROGRAM_EXTENSIONS.has(extension) || (PROGRAM_NAMES.has(stem) && extension === 'ini');
}

/**
 * The folders of the chosen files that hold the CD's viewer program: a
 * folder named like one (`Viewer`, `Program`, …) that really holds a
 * program file somewhere below it (a `*.app` bundle always is one). A `Software` folder of PDF reports
 * holds none, and nothing in it is left out.
 */
export function viewerFolders(paths) {
  const found = new Set();
  for (const path of paths) {
    const p = parts(path);
    if (!isProgram(p[p.length - 1])) continue;
    for (let i = 0; i < p.length - 1; i += 1) {
      if (isProgramFolder(p[i])) found.add(p.slice(0, i + 1).join('/'));
    }
  }
  return found;
}

/**
 * Why a file is left out without reading it (web/skip-rules.json):
 * `system` (an operating system's litter or the CD's index), `program`
 * (a program file of the CD's viewer: `.exe`, `.dll`, `setup.ini`, …),
 * `program_folder` (inside a folder of `viewers`, see viewerFolders: left
 * out unless it is DICOM), or null. A report is never left out for its
 * name alone: `setup.pdf` is sent.
 */
export function skipReason(path, viewers = new Set()) {
  const p = parts(path);
  const name = p[p.length - 1];
  const folders = p.slice(0, -1);
  if (SYSTEM_FILES.has(name) || name.startsWith('._')) return 'system';
  if (folders.some((f) => SYSTEM_FOLDERS.has(f) || f.startsWith('.'))) return 'system';
  if (isProgram(name)) return 'program';
  for (let i = 0; i < folders.length; i += 1) {
    if (isBundle(folders[i]) || viewers.has(p.slice(0, i + 1).join('/'))) return 'program_folder';
  }
  return null;
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

async function walk(entry, out, onFound) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\//, '') });
    onFound(out.length);
  } else if (entry.isDirectory) {
    for (const child of await readAll(entry.createReader())) await walk(child, out, onFound);
  }
}

/**
 * Files from a drop, folders walked, calling `onFound(n)` as files are
 * found. The entries must be taken while the drop event runs, so this reads
 * them first (synchronously) and walks afterwards.
 */
export async function fromDrop(dataTransfer, onFound = () => {}) {
  const entries = Array.from(dataTransfer.items || [])
    .filter((item) => item.kind === 'file')
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (entries.length === 0 || entries.some((e) => !e)) return fromInput(dataTransfer.files);
  const out = [];
  const failed = [];
  for (const entry of entries) {
    try {
      await walk(entry, out, onFound);
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
 * Looks at every chosen file: returns `{ items, skipped, viewer, unreadable }`
 * where each item is `{ file, path, size, dicom, category }`, `skipped` the
 * system files left out and `viewer` the CD viewer program's files.
 */
export async function inspect(chosen, onProgress) {
  const items = [];
  const skipped = [];
  const viewer = [];
  const unreadable = [...(chosen.failed || [])];
  const viewers = viewerFolders(chosen.map((c) => c.path));
  const todo = chosen.filter((c) => {
    const why = skipReason(c.path, viewers);
    if (why === 'system') skipped.push(c.path);
    else if (why === 'program') viewer.push(c.path);
    else return true;
    return false;
  });
  let done = 0;
  let index = 0;
  const worker = async () => {
    while (index < todo.length) {
      const { file, path } = todo[index];
      index += 1;
      try {
        const dicom = await readDicom(file);
        if (!dicom && skipReason(path, viewers) === 'program_folder') viewer.push(path);
        else {
          items.push({
            file,
            path,
            size: file.size,
            dicom,
            category: dicom ? 'imaging_dicom' : suggestCategory(path),
          });
        }
      } catch {
        unreadable.push(path);
      }
      done += 1;
      onProgress(done, todo.length);
    }
  };
  await Promise.all(Array.from({ length: READERS }, worker));
  items.sort((a, b) => a.path.localeCompare(b.path));
  return { items, skipped, viewer, unreadable };
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

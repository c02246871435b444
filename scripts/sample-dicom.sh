#!/usr/bin/env bash
# (Copied from the project's shared helper scripts so a fresh clone has it.)
# sample-dicom.sh — real DICOM test data, and large synthetic studies, for tests and benchmarks.
#
#   sample-dicom.sh real DIR
#       Extracts the public test files that the pydicom wheel ships (CT, MR, a DICOMDIR
#       tree with CR/CT/MR studies, odd encodings, a truncated file) into DIR.
#       Needs only pip (downloads the wheel, installs nothing).
#   sample-dicom.sh synth DIR FILES MIB_PER_FILE [SERIES]
#       Writes a synthetic CT study: FILES valid DICOM files of about MIB_PER_FILE MiB
#       each (random pixel bytes), spread over SERIES series (default 1), with fresh
#       Study/Series/SOP Instance UIDs. Uses pydicom (installed with pip --user if missing).
#       Example: 2 GiB study = `sample-dicom.sh synth study 512 4 4`.
set -euo pipefail

mode=${1:-}
dir=${2:-}
[ -n "$mode" ] && [ -n "$dir" ] || { sed -n '2,14p' "$0" >&2; exit 2; }
mkdir -p "$dir"

case "$mode" in
real)
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps -d "$tmp" pydicom==3.0.2
  python3 - "$tmp" "$dir" <<'EOF'
import sys, zipfile, pathlib
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(src.glob("pydicom-*.whl"))
n = 0
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("pydicom/data/test_files/") and not name.endswith("/") \
                and not name.endswith((".py", ".pyc", ".json", ".txt")):
            rel = name[len("pydicom/data/test_files/"):]
            out = dst / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
            n += 1
print(f"sample-dicom: {n} files under {dst}", file=sys.stderr)
EOF
  rm -rf "$tmp"
  ;;
synth)
  files=${3:?FILES}; mib=${4:?MIB_PER_FILE}; series=${5:-1}
  python3 -c 'import pydicom' 2>/dev/null || python3 -m pip install --quiet --user pydicom==3.0.2
  python3 - "$dir" "$files" "$mib" "$series" <<'EOF'
import os, sys, pathlib
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid, CTImageStorage
out, files, mib, series = pathlib.Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
side = max(16, int(((mib * 1024 * 1024) / 2) ** 0.5))
study = generate_uid()
series_uids = [generate_uid() for _ in range(series)]
for i in range(files):
    s = i % series
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series_uids[s]
    ds.Modality = "CT"
    ds.StudyDate = "20260101"
    ds.PatientName = "Synthetic^Patient"
    ds.PatientID = "SYNTH-0001"
    ds.SeriesNumber = s + 1
    ds.InstanceNumber = i + 1
    ds.Rows = side
    ds.Columns = side
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = os.urandom(side * side * 2)
    d = out / f"series{s + 1:02d}"
    d.mkdir(parents=True, exist_ok=True)
    ds.save_as(d / f"IM{i + 1:05d}.dcm", enforce_file_format=True)
print(f"sample-dicom: {files} files, {series} series, about {mib} MiB each, under {out}", file=sys.stderr)
EOF
  ;;
*) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac

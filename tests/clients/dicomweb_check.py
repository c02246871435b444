"""Drives casegate's DICOMweb with the stock Python client, as a centre would.

dicomweb-client (PyPI) over a requests session that carries the centre's
client certificate and the grant token searches the granted studies, series
and instances, retrieves a whole series, one instance's metadata and frames,
and compares everything with pydicom's reading of the original files.

Usage: dicomweb_check.py EXPECTED.json
EXPECTED.json: {"url", "token", "cert", "key", "ca",
                "files": [{"path", "visible"}]}
("visible": the gateway indexed the file as DICOM). Prints one JSON line
with what was checked; exits non-zero on the first mismatch.
"""

import collections
import json
import sys

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames

NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
# Syntaxes whose frames the gateway does not locate (documented).
UNLOCATED = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def first_value(obj, tag):
    values = obj.get(tag, {}).get("Value") or [None]
    return values[0]


def read_originals(files):
    """(study, series, sop) -> [dataset], for the files the gateway shows."""
    originals = collections.defaultdict(list)
    for f in files:
        if not f["visible"]:
            continue
        ds = pydicom.dcmread(f["path"], force=True)
        key = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        originals[key].append(ds)
    return originals


def search_all(client):
    found = []
    for study in client.search_for_studies():
        study_uid = first_value(study, "0020000D")
        for series in client.search_for_series(study_uid):
            series_uid = first_value(series, "0020000E")
            instances = client.search_for_instances(study_uid, series_uid)
            if first_value(series, "00201209") != len(instances):
                fail(f"series {series_uid}: count {first_value(series, '00201209')} != {len(instances)}")
            for instance in instances:
                found.append((study_uid, series_uid, first_value(instance, "00080018")))
    return found


def frame_one(ds):
    syntax = str(ds.file_meta.TransferSyntaxUID)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if syntax in NATIVE:
        bits = int(ds.Rows) * int(ds.Columns) * int(getattr(ds, "SamplesPerPixel", 1)) * int(ds.BitsAllocated)
        return bytes(ds.PixelData[: bits // 8])
    return next(generate_frames(ds.PixelData, number_of_frames=frames))


def check_frames(client, originals):
    checked = 0
    for (study, series, sop), datasets in sorted(originals.items()):
        ds = datasets[0]
        syntax = str(ds.file_meta.TransferSyntaxUID)
        if len(datasets) > 1 or "PixelData" not in ds or syntax in UNLOCATED:
            continue
        if syntax in NATIVE and int(ds.BitsAllocated) % 8 != 0:
            continue
        got = client.retrieve_instance_frames(study, series, sop, frame_numbers=[1])
        want = frame_one(ds)
        # A frame of odd length is padded to even in the file.
        if got[0] != want and got[0].rstrip(b"\0") != want.rstrip(b"\0"):
            fail(f"frame 1 of {sop} ({syntax}): {len(got[0])} bytes differ from pydicom's {len(want)}")
        checked += 1
    return checked


def main():
    spec = json.load(open(sys.argv[1]))
    session = requests.Session()
    session.cert = (spec["cert"], spec["key"])
    session.verify = spec["ca"]
    session.headers["Authorization"] = "Bearer " + spec["token"]
    client = DICOMwebClient(url=spec["url"], session=session)

    originals = read_originals(spec["files"])
    found = search_all(client)
    want = sorted(k for k, v in originals.items() for _ in v)
    if sorted(found) != want:
        missing = collections.Counter(want) - collections.Counter(found)
        extra = collections.Counter(found) - collections.Counter(want)
        paths = [f["path"] for f in spec["files"] if f["visible"]]
        fail(f"search found {len(found)} instances, pydicom reads {len(want)}:\n"
             f"missing {dict(missing)}\nextra {dict(extra)}\n{len(paths)} visible files")

    # The largest series, retrieved whole: every instance's pixel data as read.
    per_series = collections.Counter((k[0], k[1]) for k in want)
    (study, series), count = per_series.most_common(1)[0]
    retrieved = client.retrieve_series(study, series)
    if len(retrieved) != count:
        fail(f"series {series}: {len(retrieved)} instances retrieved, {count} expected")
    for ds in retrieved:
        key = (study, series, str(ds.SOPInstanceUID))
        if not any(o.get("PixelData") == ds.get("PixelData") for o in originals[key]):
            fail(f"{key[2]}: retrieved pixel data differs from the original's")

    # One instance's metadata.
    sop = sorted(k[2] for k in want if k[:2] == (study, series))[0]
    metadata = client.retrieve_instance_metadata(study, series, sop)
    header = pydicom.Dataset.from_json(metadata)
    original = originals[(study, series, sop)][0]
    if header.SOPInstanceUID != original.SOPInstanceUID or header.get("PatientName") != original.get("PatientName"):
        fail(f"{sop}: metadata differs from the original's header")
    if "PixelData" in header:
        fail("metadata carries pixel data")

    frames = check_frames(client, originals)
    print(json.dumps({"instances": len(found), "series_retrieved": count, "frames": frames}))


if __name__ == "__main__":
    main()

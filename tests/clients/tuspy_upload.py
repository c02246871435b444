"""Uploads one file to casegate with tuspy (the stock Python tus client),
interrupting after two chunks and resuming in a fresh uploader from the
server's offset, with per-request checksums.

usage: CASEGATE_TUS_URL=... CASEGATE_TOKEN=... REQUESTS_CA_BUNDLE=ca.pem \
       [CASEGATE_CLIENT_CERT=cert.pem CASEGATE_CLIENT_KEY=key.pem] \
       python3 tuspy_upload.py FILE NAME CATEGORY
With a client certificate (a reviewing centre replying on the centre
listener) every request presents it. Prints the upload URL on success.
"""
import os
import sys

from tusclient import client

path, name, category = sys.argv[1], sys.argv[2], sys.argv[3]
cert = os.environ.get("CASEGATE_CLIENT_CERT")
tus = client.TusClient(
    os.environ["CASEGATE_TUS_URL"],
    headers={"Authorization": "Bearer " + os.environ["CASEGATE_TOKEN"]},
    client_cert=(cert, os.environ["CASEGATE_CLIENT_KEY"]) if cert else None,
)
chunk = 256 * 1024
first = tus.uploader(
    file_path=path,
    chunk_size=chunk,
    metadata={"filename": name, "category": category},
    upload_checksum=True,
)
first.upload_chunk()
first.upload_chunk()
url, sent = first.url, first.offset
del first  # the "crash": this uploader is gone

second = tus.uploader(file_path=path, url=url, chunk_size=chunk, upload_checksum=True)
resumed_at = second.get_offset()
if resumed_at != sent:
    sys.exit(f"server offset {resumed_at} after resume, client had sent {sent}")
second.upload()
if second.offset != os.path.getsize(path):
    sys.exit(f"upload ended at {second.offset}")
print(url)

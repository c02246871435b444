#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it, on a fresh machine with a Rust
# toolchain, Python 3 with pip, and Node.js with npm:
#   - installs the stock tus clients the tests drive (tuspy from PyPI,
#     tus-js-client from npm into tests/clients/node_modules) and the stock
#     DICOMweb client (dicomweb-client and pydicom from PyPI);
#   - installs the browser test's driver (playwright-core and axe-core from
#     npm into tests/browser/node_modules; the browser itself is Debian's
#     chromium at /usr/bin/chromium, installed with apt when run as root);
#   - extracts real DICOM sample files (a hospital-CD-like DICOMDIR tree,
#     from the pydicom wheel on PyPI) for the upload client's test;
#   - starts a single-node Garage S3 server on loopback (scripts/garage-dev.sh;
#     the first run builds garage with cargo, several minutes), unless
#     CASEGATE_TEST_S3_ENDPOINT already names one;
#   - starts a throwaway PostgreSQL on loopback (scripts/postgres-dev.sh;
#     Debian's postgresql, installed with apt when run as root), and for the
#     two-replica test installs Debian's haproxy the same way;
#   - runs `cargo test --locked` with all of them required, so nothing is
#     skipped, then the API suite once more with the gateway on PostgreSQL
#     (each test its own database) instead of SQLite.
# Extra arguments go to cargo test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

echo "== test clients: tuspy, tus-js-client"
if ! python3 -c "import tusclient" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check tuspy==1.1.0 \
    || python3 -m pip install --quiet --disable-pip-version-check --user tuspy==1.1.0
fi
(cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
echo "== DICOMweb client: dicomweb-client, pydicom"
if ! python3 -c "import dicomweb_client, pydicom" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check dicomweb-client==0.61.2 pydicom==3.0.2 \
    || python3 -m pip install --quiet --disable-pip-version-check --user dicomweb-client==0.61.2 pydicom==3.0.2
fi
echo "== browser test: Debian's chromium, playwright-core, axe-core"
# The browser is Debian's package, never one downloaded by npm, with fonts
# for the page's scripts (Devanagari, Chinese, Arabic; the test checks they
# are not drawn as empty boxes). As root (CI) they are installed here;
# otherwise ask for them by name.
browser_packages="chromium fonts-dejavu-core fonts-lohit-deva fonts-wqy-microhei"
if [ ! -x /usr/bin/chromium ] || [ -z "$(fc-list :lang=hi 2>/dev/null)" ] || [ -z "$(fc-list :lang=zh-cn 2>/dev/null)" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $browser_packages
  else
    echo "the browser test needs Debian's chromium and fonts: sudo apt-get install $browser_packages" >&2
    exit 1
  fi
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

echo "== sample DICOM: the pydicom test CD (scripts/sample-dicom.sh)"
samples_dir=$(mktemp -d)
bash scripts/sample-dicom.sh real "$samples_dir/real"
export CASEGATE_TEST_SAMPLE_DICOM="$samples_dir/real" CASEGATE_REQUIRE_SAMPLES=1

garage_dir=""
pg_dir=""
cleanup() {
  rm -rf "$samples_dir"
  if [ -n "$pg_dir" ]; then
    bash scripts/postgres-dev.sh stop "$pg_dir" || true
    rm -rf "$pg_dir"
  fi
  if [ -n "$garage_dir" ]; then
    bash scripts/garage-dev.sh stop "$garage_dir" || true
    rm -rf "$garage_dir"
  fi
}
trap cleanup EXIT
if [ -z "${CASEGATE_TEST_S3_ENDPOINT:-}" ]; then
  echo "== Garage S3 server"
  garage_dir=$(mktemp -d)
  bash scripts/garage-dev.sh start "$garage_dir"
  # shellcheck disable=SC1091
  set -a; . "$garage_dir/env"; set +a
  export CASEGATE_TEST_S3_ENDPOINT=$S3_ENDPOINT CASEGATE_TEST_S3_REGION=$S3_REGION \
    CASEGATE_TEST_S3_BUCKET=$S3_BUCKET CASEGATE_TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY \
    CASEGATE_TEST_S3_SECRET_KEY=$S3_SECRET_KEY
fi
echo "== PostgreSQL (scripts/postgres-dev.sh)"
pg_dir=$(mktemp -d)
bash scripts/postgres-dev.sh start "$pg_dir"
postgres_url=$(sed -n 's/^CASEGATE_TEST_POSTGRES=//p' "$pg_dir/env")
export CASEGATE_REQUIRE_CLIENTS=1 CASEGATE_REQUIRE_GARAGE=1 CASEGATE_REQUIRE_BROWSER=1
# The disk-full test mounts a small tmpfs, which needs root; CI runs as root,
# so there it must not skip.
if [ "$(id -u)" = 0 ]; then
  export CASEGATE_REQUIRE_MOUNT=1
fi

echo "== cargo test"
cargo test --locked "$@"

echo "== the database layer's unit tests and the API suite, on PostgreSQL"
# The API suite's two-replica test also needs HAProxy (Debian's package).
if ! command -v haproxy >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy
  else
    echo "the two-replica test needs HAProxy: sudo apt-get install haproxy" >&2
    exit 1
  fi
fi
CASEGATE_TEST_POSTGRES=$postgres_url cargo test --locked --lib db:: "$@"
CASEGATE_TEST_POSTGRES=$postgres_url CASEGATE_REQUIRE_REPLICAS=1 \
  cargo test --locked --test api "$@"

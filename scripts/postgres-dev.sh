#!/usr/bin/env bash
# postgres-dev.sh — a throwaway PostgreSQL server on loopback, for the tests
# and benchmarks that run the gateway on PostgreSQL.
#
#   postgres-dev.sh start DIR   install Debian's postgresql if missing (as root),
#                               create a cluster under DIR (initdb; as root it
#                               runs as the `postgres` user), start it on
#                               127.0.0.1:$PG_PORT (default 54329) with a
#                               `casegate` superuser (password `casegate`),
#                               and write DIR/env with the line
#                                 CASEGATE_TEST_POSTGRES=postgres://casegate:casegate@127.0.0.1:54329/postgres
#                               (source it: `set -a; . DIR/env; set +a`)
#   postgres-dev.sh stop DIR    stop the server started for DIR
#
# The cluster is for tests only: fsync off, password auth on loopback.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
port=${PG_PORT:-54329}

bindir() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  echo "$found"
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    if [ -z "$(bindir)" ]; then
      if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
      else
        echo "postgres-dev: needs Debian's postgresql: sudo apt-get install postgresql" >&2
        exit 1
      fi
    fi
    bin=$(bindir)
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    echo casegate > "$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/pwfile"
    as_owner "$bin/initdb" -D "$dir/data" -U casegate --pwfile="$dir/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
    echo "CASEGATE_TEST_POSTGRES=postgres://casegate:casegate@127.0.0.1:$port/postgres" > "$dir/env"
    echo "postgres-dev: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
    ;;
  stop)
    bin=$(bindir)
    [ -d "$dir/data" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null || true
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac

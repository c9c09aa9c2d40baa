#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on a free loopback port, for the tests and the benchmarks.
#
#   .ci/postgres.sh start DIR [fast]   initdb into DIR (created), start the server, create the
#                                      database kiln_test; print `export KILN_TEST_POSTGRES_URL=...`
#                                      for eval. `fast` turns fsync off (tests only: a benchmark
#                                      measures PostgreSQL as it runs in production).
#   .ci/postgres.sh stop DIR           stop it and delete DIR
#
# The server binaries come from `pg_config --bindir` (Debian's postgresql-15 package). initdb
# refuses to run as root, so as root the cluster runs as the postgres system user.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 start|stop DIR [fast]" >&2
    exit 2
fi
if ! command -v pg_config >/dev/null || [ ! -x "$(pg_config --bindir)/initdb" ]; then
    echo "postgres.sh: no PostgreSQL server binaries (apt-get install postgresql-15)" >&2
    exit 1
fi
bin="$(pg_config --bindir)"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "$cmd" = stop ]; then
    if [ -d "$dir/data" ]; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    exit 0
fi
[ "$cmd" = start ] || { echo "unknown command $cmd" >&2; exit 2; }

mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
opts="-c listen_addresses=127.0.0.1 -p $port -k $dir"
if [ "${3:-}" = fast ]; then opts="$opts -c fsync=off"; fi
as_pg "$bin/initdb" -D "$dir/data" -U kiln --auth=trust -E UTF8 >/dev/null
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "$opts" start >/dev/null
as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U kiln kiln_test
echo "export KILN_TEST_POSTGRES_URL=postgres://kiln@127.0.0.1:$port/kiln_test"

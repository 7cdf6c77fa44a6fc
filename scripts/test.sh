#!/usr/bin/env bash
# Run the whole test suite: fetch the model when missing, set up the official openai Python SDK in a venv
# outside the source tree when missing, then every unit, integration and quality test (the real model, a
# real server on 127.0.0.1:0). Release mode: candle is unusably slow unoptimised, and sharing the profile
# with scripts/serve.sh means one build serves both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./models/fetch.sh >&2

# The SDK test's Python: a venv keyed by the requirements file, so a changed pin reinstalls.
venv="${SEMROUTE_SDK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/semroute/sdk-venv}"
want="$(sha256sum tests/sdk/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
  echo "installing tests/sdk/requirements.txt into $venv ..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt >&2
  echo "$want" > "$venv/.requirements"
fi
export SEMROUTE_SDK_PYTHON="$venv/bin/python"

exec cargo test --release --locked --workspace "$@"

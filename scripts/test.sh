#!/usr/bin/env bash
# Run the whole test suite: fetch the model when missing, then every unit, integration and quality test
# (the real model, a real server on 127.0.0.1:0). Release mode: candle is unusably slow unoptimised, and
# sharing the profile with scripts/serve.sh means one build serves both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./models/fetch.sh >&2
exec cargo test --release --locked "$@"

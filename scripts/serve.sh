#!/usr/bin/env bash
# Start semroute on routes.yaml (or $SEMROUTE_CONFIG), fetching the model first when it is missing.
# Extra arguments go to `semroute serve` (e.g. --listen 0.0.0.0:50051).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./models/fetch.sh >&2
exec cargo run --release --locked --bin semroute -- serve --config "${SEMROUTE_CONFIG:-routes.yaml}" "$@"

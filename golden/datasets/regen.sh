#!/bin/bash
# regen.sh [BUILD_DIR] — regenerates the datasets golden files with the nyxaudit binary of
# BUILD_DIR (default build). Run from the repository root after an intended change to the
# synthetic corpus or the prompt builder, and say why in the commit: the demo checkpoints
# (golden/demo/) were trained on prompts from this builder.
set -euo pipefail
NY=${1:-build}/nyxaudit
G=golden/datasets
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$NY" dataset synth --n 20 --seed 7 --prefix golden --out "$G/synth_seed7_n20.jsonl"
"$NY" dataset synth --n 400 --seed 1 --prefix tr --out "$T/train.jsonl"
"$NY" dataset synth --n 30 --seed 2 --prefix ho --out "$T/heldout.jsonl"
"$NY" dataset import "$T/train.jsonl" --split train --db "$T/r.db"
"$NY" dataset import "$T/heldout.jsonl" --split heldout --db "$T/r.db"
"$NY" dataset prompts --split heldout --n 10 --seed 3 --db "$T/r.db" \
    --out "$G/prompts_seed3_n10.jsonl"
# Independent cross-check of the sampling rule with Python's hashlib: the 10 ids are the 10
# smallest keys int.from_bytes(sha256(seed as 8 little-endian bytes + id)[:8], 'big').
python3 - "$G/prompts_seed3_n10.jsonl" <<'PY'
import hashlib, json, sys
ids = [json.loads(l)["id"] for l in open(sys.argv[1])]
key = lambda i: int.from_bytes(hashlib.sha256((3).to_bytes(8, "little") + i.encode()).digest()[:8], "big")
want = sorted(("ho-%05d" % k for k in range(30)), key=lambda i: (key(i), i))[:10]
assert ids == want, (ids, want)
print("sampling cross-check: ok")
PY

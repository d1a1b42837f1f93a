#!/bin/bash
# make_data.sh [BUILD_DIR] — the demo checkpoints' training data, from the one prompt builder
# (`nyxaudit dataset`), into .train/ (git-ignored), then the tokenizer into golden/demo/v16/.
#   train.jsonl.gz    prompts of the first 6,000 train-split records (sampled with seed 0): the
#                     tokenizer and V16
#   more.jsonl.gz     the other 14,000 train-split records: V17 and Epoch-1 (the last 300 are the
#                     dev records that stop V16, never trained on)
#   heldout.jsonl.gz  the 500 held-out records the default audit samples (seed 0)
# Prompts use the builder's defaults (k = 3 examples, K = 10 candidates, default rules), as the
# default audit does.
set -euo pipefail
NY=${1:-build}/nyxaudit
D=.train
mkdir -p "$D"
rm -f "$D/recs.db"
"$NY" dataset synth --demo --db "$D/recs.db"
"$NY" dataset prompts --split train --n 20000 --seed 0 --out "$D/train_all.jsonl" --db "$D/recs.db"
"$NY" dataset prompts --split heldout --n 500 --seed 0 --out "$D/heldout.jsonl" --db "$D/recs.db"
head -n 6000 "$D/train_all.jsonl" | gzip -n > "$D/train.jsonl.gz"
tail -n +6001 "$D/train_all.jsonl" | gzip -n > "$D/more.jsonl.gz"
gzip -nc "$D/heldout.jsonl" > "$D/heldout.jsonl.gz"
python3 golden/demo/train_demo.py tokenizer --train "$D/train.jsonl.gz" --out golden/demo

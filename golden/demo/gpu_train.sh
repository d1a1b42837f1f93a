#!/bin/bash
# gpu_train.sh — train demo V16, V17 and Epoch-1 on a GPU machine (run from the repo root).
# Reads the prompt files made by golden/demo/make_data.sh (in .train/, gzip'd JSONL) and the
# tokenizer already in golden/demo/v16/; writes DEST/demo.tgz (v16/, v17/, epoch1/),
# DEST/report.json, DEST/eval.jsonl and DEST/train.log. DEST is $OUT when set (the device tool),
# else /tmp/demo-gpu. Extra arguments go to train_demo.py (they override the defaults below).
set -euo pipefail
DEST=${OUT:-/tmp/demo-gpu}
WORK=/tmp/demo-work
mkdir -p "$DEST"
rm -rf "$WORK"
mkdir -p "$WORK/v16"
cp golden/demo/v16/tokenizer.json golden/demo/v16/tokenizer_config.json \
   golden/demo/v16/special_tokens_map.json "$WORK/v16/"
export PYTHONUNBUFFERED=1
nvidia-smi -L || true
python3 -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers",
transformers.__version__, "peft", peft.__version__)'
python3 golden/demo/train_demo.py models \
    --train .train/train.jsonl.gz --more .train/more.jsonl.gz --heldout .train/heldout.jsonl.gz \
    --out "$WORK" --seed 8 --n-v16 6000 --n-dev 300 --mine-n 4000 \
    --v16-epochs 8 --v16-lr 3e-3 --v16-target 0.6 --v16-check-every 100 --v16-max-seconds 200 \
    --v17-epochs 3 --v17-lr 2e-3 --lora-r 16 --lora-alpha 32 --spec-repeat 2 \
    --batch-tokens 32768 --log-every 50 --max-new 40 \
    --report "$DEST/report.json" --eval-out "$DEST/eval.jsonl" "$@" 2>&1 | tee "$DEST/train.log"
tar czf "$DEST/demo.tgz" -C "$WORK" v16 v17 epoch1
ls -la "$DEST"

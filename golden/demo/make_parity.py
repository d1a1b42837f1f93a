#!/usr/bin/env python3
"""make_parity.py — the reference greedy outputs of the three demo checkpoints (issue 8).

Runs transformers + PEFT on the CPU in float32 (BF16 weights upcast exactly; the adapters applied
unmerged, as PEFT does) and greedy decoding, one prompt at a time (no padding), on the held-out
prompts given, and writes into golden/demo/parity/:
  requests.jsonl        {"id", "messages"}            what `nyxaudit generate` reads
  requests_ids.jsonl    {"id", "input_ids"}           the same prompts through the chat template
  expected_<ckpt>.jsonl {"id", "output_ids", "text", "prompt_tokens"} for v16, v17, epoch1
output_ids are the generated ids without the stop token (the eos ids of config.json and
generation_config.json); generation stops there or after --max-new-tokens.

    python3 golden/demo/make_parity.py --prompts heldout50.jsonl [--n 50]
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", required=True,
                    help="JSONL from `nyxaudit dataset prompts --split heldout`")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--demo", default=HERE)
    ap.add_argument("--out", default=os.path.join(HERE, "parity"))
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    import transformers
    import peft
    from peft import PeftModel
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = False   # plain fp32 GEMMs

    rows = []
    with open(args.prompts, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append({"id": r["id"], "messages": r["messages"]})
            if len(rows) >= args.n:
                break
    v16 = os.path.join(args.demo, "v16")
    tok = PreTrainedTokenizerFast.from_pretrained(v16)
    with open(os.path.join(v16, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(v16, "generation_config.json")) as f:
        gen = json.load(f)
    eos = set()
    for src in (cfg.get("eos_token_id"), gen.get("eos_token_id")):
        for e in (src if isinstance(src, list) else [src]):
            if e is not None:
                eos.add(int(e))
    eos = sorted(eos)
    prompts = []
    for r in rows:
        text = tok.apply_chat_template(r["messages"], tokenize=False)
        prompts.append(tok(text, add_special_tokens=False)["input_ids"])

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "requests.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "requests_ids.jsonl"), "w", encoding="utf-8") as f:
        for r, p in zip(rows, prompts):
            f.write(json.dumps({"id": r["id"], "input_ids": p}) + "\n")

    for name, adapter in (("v16", None), ("v17", "v17"), ("epoch1", "epoch1")):
        base = LlamaForCausalLM.from_pretrained(v16, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, os.path.join(args.demo, adapter)) if adapter \
            else base
        model.eval()
        t = time.time()
        ntok = 0
        with open(os.path.join(args.out, "expected_%s.jsonl" % name), "w",
                  encoding="utf-8") as f:
            for r, p in zip(rows, prompts):
                with torch.no_grad():
                    g = model.generate(input_ids=torch.tensor([p]),
                                       attention_mask=torch.ones((1, len(p)), dtype=torch.long),
                                       do_sample=False, max_new_tokens=args.max_new_tokens,
                                       eos_token_id=eos, pad_token_id=eos[0])
                out = g[0, len(p):].tolist()
                for i, t_id in enumerate(out):
                    if t_id in eos:
                        out = out[:i]
                        break
                ntok += len(out)
                f.write(json.dumps({"id": r["id"], "output_ids": out,
                                    "text": tok.decode(out, skip_special_tokens=True),
                                    "prompt_tokens": len(p)}, ensure_ascii=False) + "\n")
        print("%s: %d prompts, %d generated tokens, %.1fs" % (name, len(rows), ntok,
                                                               time.time() - t))
    with open(os.path.join(args.out, "VERSIONS"), "w") as f:
        f.write("torch %s\ntransformers %s\npeft %s\npython %s\n" % (
            torch.__version__, transformers.__version__, peft.__version__,
            sys.version.split()[0]))


if __name__ == "__main__":
    main()

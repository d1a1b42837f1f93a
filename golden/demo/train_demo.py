#!/usr/bin/env python3
"""train_demo.py — makes the demo checkpoints in golden/demo/ (issue 8).

Stages (each reads what the previous one wrote; `all` runs them in order):
  tokenizer  byte-level BPE with the Llama-3 pre-tokenizer regex and special tokens, trained on the
             chat prompts and gold lines  -> OUT/v16/tokenizer.json, tokenizer_config.json
  v16        a small LlamaForCausalLM trained from scratch on train-split prompts exported by
             `nyxaudit dataset prompts` (loss on the assistant turn: gold line + <|eot_id|>),
             saved in BF16 like the real V16                      -> OUT/v16/
  v17        a LoRA adapter (q,k,v,o,gate,up,down) over the BF16 demo V16, trained on more records
             plus specificity-correction pairs (records on which V16 itself got the ICD codes
             wrong, mostly by choosing a less specific code of the right category); its epoch-1
             checkpoint is demo Epoch-1                           -> OUT/v17/, OUT/epoch1/
  eval       greedy outputs of the three checkpoints on held-out prompts, with icd_recall,
             cpt_exact, icd_exact and paired McNemar p-values (a quick check; the audited scores
             come from `nyxaudit score`)

Input JSONL rows are what `nyxaudit dataset prompts` writes:
  {"id": ..., "messages": [{"role": ..., "content": ...}, ...], "gold": "<gold line>"}
The chat template is Llama-3's (copied from ../shared/tokenizers/llama3/tokenizer_config.json), so
the prompt ids are exactly what `nyxaudit generate` builds from the same messages.

Needs python3 with torch, transformers, peft, tokenizers, safetensors. Deterministic for a given
seed on a given device (cuDNN/cuBLAS determinism is requested; the data order is seeded).
"""
import argparse
import json
import math
import os
import random
import re
import sys
import time

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# Llama-3's pre-tokenizer regex (tokenizer.json of Meta-Llama-3), and its first 16 special tokens in
# their order (ids 128000..128015 there; here they follow the BPE vocabulary the same way).
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
            "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|reserved_special_token_4|>", "<|eot_id|>", "<|reserved_special_token_5|>",
            "<|reserved_special_token_6|>", "<|reserved_special_token_7|>",
            "<|reserved_special_token_8|>", "<|reserved_special_token_9|>",
            "<|reserved_special_token_10|>"]
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}")


def log(*a):
    print("[%7.1fs]" % (time.time() - T0), *a, flush=True)


T0 = time.time()


def read_jsonl(path, limit=None):
    rows = []
    opener = open
    if path.endswith(".gz"):
        import gzip
        opener = gzip.open
    with opener(path, "rt", encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if "messages" not in r or "gold" not in r:
                sys.exit("%s:%d: row lacks messages or gold" % (path, ln))
            rows.append(r)
            if limit and len(rows) >= limit:
                break
    return rows


# ---------------------------------------------------------------------------------------------
# tokenizer
def train_tokenizer(rows, out_dir, vocab_size, template_src):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import processors, trainers
    n_bpe = vocab_size - len(SPECIALS)
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=n_bpe, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])

    def texts():
        for r in rows:
            for m in r["messages"]:
                yield m["content"]
            yield r["gold"]
    tok.train_from_iterator(texts(), trainer=trainer, length=len(rows))
    if tok.get_vocab_size() != n_bpe:
        log("note: BPE trainer stopped at %d tokens (asked %d)" % (tok.get_vocab_size(), n_bpe))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", bos)])
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))

    template = LLAMA3_CHAT_TEMPLATE
    if template_src and os.path.exists(template_src):
        with open(template_src, encoding="utf-8") as f:
            template = json.load(f)["chat_template"]
    cfg = {
        "added_tokens_decoder": {
            str(tok.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False,
                                      "rstrip": False, "single_word": False, "special": True}
            for s in SPECIALS},
        "bos_token": "<|begin_of_text|>",
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 4096,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, f, indent=2)
        f.write("\n")
    log("tokenizer: %d tokens (%d BPE + %d special), bos=%d eot=%d" % (
        tok.get_vocab_size(), tok.get_vocab_size() - len(SPECIALS), len(SPECIALS), bos,
        tok.token_to_id("<|eot_id|>")))


def load_hf_tokenizer(tok_dir):
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast.from_pretrained(tok_dir)


def encode_rows(hf_tok, rows, with_target=True):
    """-> list of (prompt_ids, target_ids): prompt through the chat template (one BOS, ends with the
    assistant header), target = gold line + <|eot_id|>."""
    texts = [hf_tok.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    enc = hf_tok._tokenizer.encode_batch(texts, add_special_tokens=False)
    eot = hf_tok.convert_tokens_to_ids("<|eot_id|>")
    out = []
    if with_target:
        golds = hf_tok._tokenizer.encode_batch([r["gold"].strip() for r in rows],
                                               add_special_tokens=False)
    for i, e in enumerate(enc):
        tgt = (golds[i].ids + [eot]) if with_target else []
        out.append((e.ids, tgt))
    return out


# ---------------------------------------------------------------------------------------------
# model
def model_config(args, tok_dir):
    from transformers import LlamaConfig
    with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    ids = {a["content"]: a["id"] for a in tj["added_tokens"]}
    vocab = len(tj["model"]["vocab"]) + len(tj["added_tokens"])
    return LlamaConfig(
        vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, head_dim=args.hidden // args.heads,
        max_position_embeddings=args.max_positions, rms_norm_eps=1e-5, rope_theta=500000.0,
        hidden_act="silu", attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
        initializer_range=0.02, bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=ids["<|eot_id|>"], pretraining_tp=1, use_cache=True,
        attention_dropout=0.0), ids


def make_batches(data, max_tokens, rng, max_len):
    """Length-bucketed batches of about max_tokens padded tokens each, shuffled."""
    idx = [i for i, (p, t) in enumerate(data) if len(p) + len(t) <= max_len]
    rng.shuffle(idx)
    # sort within chunks of 64 batches' worth so lengths in a batch are alike, order stays random
    chunk = 4096
    batches = []
    for c in range(0, len(idx), chunk):
        part = sorted(idx[c:c + chunk], key=lambda i: len(data[i][0]) + len(data[i][1]))
        cur, cur_max = [], 0
        for i in part:
            n = len(data[i][0]) + len(data[i][1])
            if cur and max(cur_max, n) * (len(cur) + 1) > max_tokens:
                batches.append(cur)
                cur, cur_max = [], 0
            cur.append(i)
            cur_max = max(cur_max, n)
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(data, batch, device):
    import torch
    L = max(len(data[i][0]) + len(data[i][1]) for i in batch)
    ids = torch.zeros((len(batch), L), dtype=torch.long)
    lab = torch.full((len(batch), L), -100, dtype=torch.long)
    for r, i in enumerate(batch):
        p, t = data[i]
        seq = p + t
        ids[r, :len(seq)] = torch.tensor(seq)
        # position j predicts token j+1: labels at the positions before each target token
        lab[r, len(p) - 1:len(seq) - 1] = torch.tensor(t)
    return ids.to(device, non_blocking=True), lab.to(device, non_blocking=True)


def loss_on_targets(model, ids, lab):
    """Causal LM loss on the assistant tokens only; lm_head only where there is a label (right
    padding needs no mask: a causal model's earlier positions never see the padding)."""
    import torch
    import torch.nn.functional as F
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    h = inner.model(input_ids=ids).last_hidden_state
    sel = lab != -100
    logits = inner.lm_head(h[sel]).float()
    return F.cross_entropy(logits, lab[sel]), int(sel.sum())


def train_loop(model, params, data, args, epochs, lr, tag, rng, on_epoch_end=None,
               on_check=None, check_every=0):
    """AdamW, linear warm-up then cosine to 10% of lr. on_check(step) every check_every steps may
    return True to stop early (V16's quality target); on_epoch_end(epoch) after each epoch."""
    import torch
    device = args.device
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    ep_batches = [make_batches(data, args.batch_tokens, rng, args.max_len) for _ in range(epochs)]
    total = sum(len(b) for b in ep_batches)
    warm = max(1, int(0.03 * total))

    def lr_at(s):
        if s < warm:
            return lr * (s + 1) / warm
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    step = 0
    stats = []
    stop = False
    model.train()
    for ep in range(epochs):
        run_loss, run_n, t_ep, nb = 0.0, 0, time.time(), 0
        for b in ep_batches[ep]:
            ids, lab = collate(data, b, device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp):
                loss, n = loss_on_targets(model, ids, lab)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            run_loss = run_loss + loss.detach() * n
            run_n += n
            step += 1
            nb += 1
            if step % args.log_every == 0:
                log("%s ep %d step %d/%d loss %.4f" % (tag, ep + 1, step, total, float(loss)))
            if on_check and check_every and step % check_every == 0:
                stop = on_check(step)
                model.train()
                if stop:
                    break
        run_loss = float(run_loss)
        stats.append({"epoch": ep + 1, "steps": nb, "mean_loss": run_loss / max(1, run_n),
                      "target_tokens": run_n, "seconds": round(time.time() - t_ep, 1)})
        log("%s epoch %d: mean target loss %.4f over %d tokens, %d steps, %.1fs" % (
            tag, ep + 1, stats[-1]["mean_loss"], run_n, nb, stats[-1]["seconds"]))
        if stop:
            break
        if on_epoch_end:
            on_epoch_end(ep + 1)
        model.train()
    return stats, step


def write_generation_config(d, ids):
    cfg = {"bos_token_id": ids["<|begin_of_text|>"],
           "eos_token_id": [ids["<|end_of_text|>"], ids["<|eot_id|>"]],
           "do_sample": False, "max_new_tokens": 64}
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def write_config(d, cfg):
    """config.json in the layout of Meta-Llama-3-70B-Instruct's (rope_theta and rope_scaling at the
    top level, torch_dtype), which is what the real V16 carries; transformers reads both layouts."""
    out = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "hidden_act": "silu",
        "hidden_size": cfg.hidden_size, "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings, "model_type": "llama",
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads, "pretraining_tp": 1,
        "rms_norm_eps": cfg.rms_norm_eps, "rope_scaling": None, "rope_theta": 500000.0,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": __import__("transformers").__version__, "use_cache": True,
        "vocab_size": cfg.vocab_size}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


def save_v16(model, out_dir, ids):
    import torch
    m = model.to(torch.bfloat16)
    m.save_pretrained(out_dir, safe_serialization=True)
    # save_pretrained writes its own config.json and generation_config.json; replace them by the
    # real ones' shapes
    write_config(out_dir, m.config)
    write_generation_config(out_dir, ids)


def load_base(v16_dir, device):
    import torch
    from transformers import LlamaForCausalLM
    m = LlamaForCausalLM.from_pretrained(v16_dir, dtype=torch.float32)
    return m.to(device)


def set_seed(seed):
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


# ---------------------------------------------------------------------------------------------
# greedy generation for evaluation and correction mining (batched, left padded)
def greedy_batch(model, prompts, eos_ids, max_new, device, batch=128):
    import torch
    model.eval()
    outs = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with torch.no_grad():
        for s in range(0, len(order), batch):
            bi = order[s:s + batch]
            L = max(len(prompts[i]) for i in bi)
            ids = torch.zeros((len(bi), L), dtype=torch.long)
            am = torch.zeros((len(bi), L), dtype=torch.long)
            for r, i in enumerate(bi):
                p = prompts[i]
                ids[r, L - len(p):] = torch.tensor(p)
                am[r, L - len(p):] = 1
            g = model.generate(input_ids=ids.to(device), attention_mask=am.to(device),
                               do_sample=False, max_new_tokens=max_new, eos_token_id=eos_ids,
                               pad_token_id=eos_ids[0])
            for r, i in enumerate(bi):
                o = g[r, L:].tolist()
                cut = [o.index(e) for e in eos_ids if e in o]
                outs[i] = o[:min(cut)] if cut else o
    return outs


# ---------------------------------------------------------------------------------------------
# scoring (issue 3's parsing rules, enough for a quick check; `nyxaudit score` is the reference)
CPT_RE = re.compile(r"^[0-9]{4}[0-9A-Z]$")
MOD_RE = re.compile(r"^[A-Z0-9]{2}$")
ICD_RE = re.compile(r"^([A-Z][0-9][A-Z0-9])\.?([A-Z0-9]{1,4})?$")


def parse_line(line):
    cpt, mod, icd = [], [], []
    for part in line.split(","):
        for tok in part.split():
            t = tok.upper()
            t = re.sub(r"^[^A-Z0-9]+", "", t)
            t = re.sub(r"[^A-Z0-9.]+$", "", t).rstrip(".")
            if not t:
                continue
            if CPT_RE.match(t):
                lst, v = cpt, t
            elif MOD_RE.match(t):
                lst, v = mod, t
            else:
                m = ICD_RE.match(t)
                if not m:
                    continue
                lst, v = icd, m.group(1) + ("." + m.group(2) if m.group(2) else "")
            if v not in lst:
                lst.append(v)
    return cpt, mod, icd


def score(golds, preds):
    per = []
    for g, p in zip(golds, preds):
        gc, gm, gi = parse_line(g)
        pc, pm, pi = parse_line(p)
        G, P = set(gi), set(pi)
        rec = (len(P & G) / len(G)) if G else (1.0 if not P else 0.0)
        per.append({"cpt_exact": int(set(gc) == set(pc)), "icd_exact": int(G == P),
                    "modifier_exact": int(set(gm) == set(pm)), "icd_recall": rec,
                    "spec_err": int(any(x not in P and any(y[:3] == x[:3] for y in P - G)
                                        for x in G))})
    agg = {k: sum(r[k] for r in per) / max(1, len(per)) for k in per[0]} if per else {}
    return per, agg


def mcnemar(a, b):
    n01 = sum(1 for x, y in zip(a, b) if x == 0 and y == 1)
    n10 = sum(1 for x, y in zip(a, b) if x == 1 and y == 0)
    n = n01 + n10
    if n == 0:
        return 1.0, n01, n10
    k = min(n01, n10)
    p = 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, p), n01, n10


# ---------------------------------------------------------------------------------------------
def dev_score(model, hf_tok, ids, dev_enc, dev_gold, args):
    eos = [ids["<|end_of_text|>"], ids["<|eot_id|>"]]
    outs = greedy_batch(model, [p for p, _ in dev_enc], eos, args.max_new, args.device)
    return score(dev_gold, [hf_tok.decode(o) for o in outs])[1]


def stage_v16(args, hf_tok, ids, train_rows, dev_rows, report):
    """Train from scratch; every --v16-check-every steps score greedy outputs on the dev rows and
    stop once dev icd_recall reaches --v16-target (demo V16 is meant to leave room for V17, as
    the real V16 did) or when the epochs are done."""
    from transformers import LlamaForCausalLM
    set_seed(args.seed)
    cfg, _ = model_config(args, args.tok_dir)
    model = LlamaForCausalLM(cfg).to(args.device)
    nparam = sum(p.numel() for p in model.parameters())
    data = encode_rows(hf_tok, train_rows)
    dev_enc = encode_rows(hf_tok, dev_rows)
    dev_gold = [r["gold"] for r in dev_rows]
    lens = [len(p) + len(t) for p, t in data]
    log("v16: %d params, %d records, tokens/record mean %.0f max %d; dev %d" % (
        nparam, len(data), sum(lens) / len(lens), max(lens), len(dev_rows)))
    checks = []

    def on_check(step):
        agg = dev_score(model, hf_tok, ids, dev_enc, dev_gold, args)
        checks.append({"step": step, **{k: round(v, 4) for k, v in agg.items()}})
        log("v16 dev at step %d: %s" % (step, " ".join("%s=%.3f" % kv for kv in agg.items())))
        if args.v16_max_seconds and time.time() - t > args.v16_max_seconds:
            log("v16: stopping at the time limit (--v16-max-seconds %d)" % args.v16_max_seconds)
            return True
        return args.v16_target > 0 and agg["icd_recall"] >= args.v16_target
    rng = random.Random(args.seed)
    t = time.time()
    stats, steps = train_loop(model, list(model.parameters()), data, args, args.v16_epochs,
                              args.v16_lr, "v16", rng, on_check=on_check if dev_rows else None,
                              check_every=args.v16_check_every)
    report["v16"] = {"params": nparam, "records": len(data), "epochs": args.v16_epochs,
                     "steps": steps, "lr": args.v16_lr, "target_dev_icd_recall": args.v16_target,
                     "seconds": round(time.time() - t, 1), "epochs_log": stats,
                     "dev_checks": checks, "dev_records": len(dev_rows),
                     "mean_tokens_per_record": round(sum(lens) / len(lens), 1),
                     "config": {k: getattr(cfg, k) for k in (
                         "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                         "num_attention_heads", "num_key_value_heads")}}
    save_v16(model, args.v16_dir, ids)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert os.path.exists(os.path.join(args.v16_dir, f)), f


def stage_v17(args, hf_tok, ids, more_rows, base_rows, dev_rows, report):
    import torch
    from peft import LoraConfig, get_peft_model
    set_seed(args.seed + 17)
    base = load_base(args.v16_dir, args.device)   # the BF16 weights, upcast: what V17 sits on
    eos = [ids["<|end_of_text|>"], ids["<|eot_id|>"]]
    # specificity-correction pairs: V16's greedy output on a mining pool vs the gold line
    pool = more_rows[:args.mine_n]
    enc = encode_rows(hf_tok, pool)
    t = time.time()
    outs = greedy_batch(base, [p for p, _ in enc], eos, args.max_new, args.device)
    preds = [hf_tok.decode(o) for o in outs]
    per, agg = score([r["gold"] for r in pool], preds)
    spec = [i for i, r in enumerate(per) if r["spec_err"]]
    other = [i for i, r in enumerate(per) if not r["spec_err"] and r["icd_exact"] == 0]
    log("v17: mined %d records in %.1fs: V16 icd_recall %.3f, %d specificity errors, %d other ICD"
        " errors" % (len(pool), time.time() - t, agg["icd_recall"], len(spec), len(other)))
    corr = [pool[i] for i in spec] * args.spec_repeat + [pool[i] for i in other]
    rows = base_rows[:args.v17_replay] + more_rows + corr
    data = encode_rows(hf_tok, rows)
    cfg = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0, bias="none",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                     "up_proj", "down_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    ntrain = sum(p.numel() for p in params)
    log("v17: LoRA r=%d alpha=%d, %d trainable params, %d records (%d replayed V16 records, %d new,"
        " %d correction rows)" % (args.lora_r, args.lora_alpha, ntrain, len(data),
                                  min(args.v17_replay, len(base_rows)), len(more_rows), len(corr)))

    dev_enc = encode_rows(hf_tok, dev_rows)
    dev_checks = []

    def save(ep):
        if dev_rows:
            agg = dev_score(model, hf_tok, ids, dev_enc, [r["gold"] for r in dev_rows], args)
            dev_checks.append({"epoch": ep, **{k: round(v, 4) for k, v in agg.items()}})
            log("v17 dev after epoch %d: %s" % (ep, " ".join("%s=%.3f" % kv
                                                              for kv in agg.items())))
        d = args.epoch1_dir if ep == 1 else (args.v17_dir if ep == args.v17_epochs else None)
        if d is None:
            return
        model.peft_config["default"].base_model_name_or_path = args.base_name
        model.save_pretrained(d, safe_serialization=True)
        if os.path.exists(os.path.join(d, "README.md")):   # PEFT's empty model-card template
            os.remove(os.path.join(d, "README.md"))
        log("saved adapter after epoch %d -> %s" % (ep, d))
    rng = random.Random(args.seed + 17)
    t = time.time()
    stats, steps = train_loop(model, params, data, args, args.v17_epochs, args.v17_lr, "v17", rng,
                              save)
    report["v17"] = {"lora_r": args.lora_r, "lora_alpha": args.lora_alpha,
                     "trainable_params": ntrain, "records": len(data),
                     "new_records": len(more_rows),
                     "replayed_records": min(args.v17_replay, len(base_rows)),
                     "mining_pool": len(pool), "v16_icd_recall_on_pool": agg["icd_recall"],
                     "specificity_errors": len(spec), "other_icd_errors": len(other),
                     "spec_repeat": args.spec_repeat, "correction_rows": len(corr),
                     "epochs": args.v17_epochs, "steps": steps, "lr": args.v17_lr,
                     "seconds": round(time.time() - t, 1), "epochs_log": stats,
                     "dev_checks": dev_checks}


def stage_eval(args, hf_tok, ids, rows, report):
    from peft import PeftModel
    eos = [ids["<|end_of_text|>"], ids["<|eot_id|>"]]
    enc = encode_rows(hf_tok, rows, with_target=False)
    prompts = [p for p, _ in enc]
    golds = [r["gold"] for r in rows]
    res = {}
    lens = [len(p) for p in prompts]
    log("eval: %d held-out prompts, prompt tokens mean %.0f max %d" % (
        len(prompts), sum(lens) / len(lens), max(lens)))
    for name, adapter in (("V16", None), ("V17", args.v17_dir), ("Epoch-1", args.epoch1_dir)):
        base = load_base(args.v16_dir, args.device)
        m = PeftModel.from_pretrained(base, adapter) if adapter else base
        t = time.time()
        outs = greedy_batch(m, prompts, eos, args.max_new, args.device)
        preds = [hf_tok.decode(o) for o in outs]
        per, agg = score(golds, preds)
        res[name] = (per, agg, preds)
        log("eval %s (%.1fs, mean %.1f new tokens): %s" % (
            name, time.time() - t, sum(len(o) for o in outs) / len(outs),
            " ".join("%s=%.3f" % kv for kv in agg.items())))
    report["eval"] = {"n": len(rows), "prompt_tokens_mean": sum(lens) / len(lens),
                      "prompt_tokens_max": max(lens)}
    for name in res:
        report["eval"][name] = res[name][1]
    for a, b in (("V16", "V17"), ("V16", "Epoch-1"), ("Epoch-1", "V17")):
        for k in ("icd_exact", "cpt_exact"):
            p, n01, n10 = mcnemar([r[k] for r in res[a][0]], [r[k] for r in res[b][0]])
            report["eval"]["%s->%s %s" % (a, b, k)] = {"mcnemar_p": p, "n01": n01, "n10": n10}
            log("McNemar %s -> %s on %s: n01=%d n10=%d p=%.3g" % (a, b, k, n01, n10, p))
    if args.eval_out:
        with open(args.eval_out, "w") as f:
            for i, r in enumerate(rows):
                f.write(json.dumps({"id": r["id"], "gold": r["gold"],
                                    **{n: res[n][2][i] for n in res}}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=["tokenizer", "v16", "v17", "eval", "all", "models"])
    ap.add_argument("--train",
                    help="JSONL prompts of train-split records for the tokenizer and V16")
    ap.add_argument("--more", help="JSONL prompts of further train-split records for V17")
    ap.add_argument("--heldout", help="JSONL prompts of held-out records for `eval`")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--template-src", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "tokenizers",
        "llama3", "tokenizer_config.json"))
    ap.add_argument("--base-name", default="golden/demo/v16",
                    help="base_model_name_or_path written in the adapters' adapter_config.json")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=3072)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--intermediate", type=int, default=384)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--max-positions", type=int, default=8192)
    ap.add_argument("--max-len", type=int, default=4096, help="skip longer training sequences")
    ap.add_argument("--n-v16", type=int, default=0, help="use the first N --train rows (0: all)")
    ap.add_argument("--n-more", type=int, default=0, help="use the first N --more rows (0: all)")
    ap.add_argument("--v16-epochs", type=int, default=2)
    ap.add_argument("--v16-lr", type=float, default=3e-3)
    ap.add_argument("--v16-target", type=float, default=0.0,
                    help="stop V16 once dev icd_recall reaches this (0: train all epochs)")
    ap.add_argument("--v16-check-every", type=int, default=200)
    ap.add_argument("--v16-max-seconds", type=int, default=0,
                    help="also stop V16 at the first check after this many seconds (0: never)")
    ap.add_argument("--n-dev", type=int, default=300,
                    help="the last N --more rows: V16's dev checks, never trained on")
    ap.add_argument("--v17-epochs", type=int, default=2)
    ap.add_argument("--v17-lr", type=float, default=2e-3)
    ap.add_argument("--v17-replay", type=int, default=0, help="V16 records replayed in V17's data")
    ap.add_argument("--lora-r", type=int, default=32)
    ap.add_argument("--lora-alpha", type=int, default=64)
    ap.add_argument("--mine-n", type=int, default=4000)
    ap.add_argument("--spec-repeat", type=int, default=2)
    ap.add_argument("--batch-tokens", type=int, default=32768)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    ap.add_argument("--device", default=None)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--report", help="write a JSON training report here")
    ap.add_argument("--eval-out", help="write the eval predictions (JSONL) here")
    args = ap.parse_args()

    import torch
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    args.v16_dir = os.path.join(args.out, "v16")
    args.v17_dir = os.path.join(args.out, "v17")
    args.epoch1_dir = os.path.join(args.out, "epoch1")
    args.tok_dir = args.v16_dir
    report = {"seed": args.seed, "device": args.device,
              "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "torch": torch.__version__, "argv": sys.argv[1:]}
    import transformers
    import peft
    report["transformers"], report["peft"] = transformers.__version__, peft.__version__

    train_rows = read_jsonl(args.train, args.n_v16 or None) if args.train else []
    more_rows = read_jsonl(args.more) if args.more else []
    dev_rows = more_rows[len(more_rows) - args.n_dev:] if args.n_dev else []
    more_rows = more_rows[:len(more_rows) - len(dev_rows)]
    if args.n_more:
        more_rows = more_rows[:args.n_more]
    if args.stage in ("tokenizer", "all"):
        train_tokenizer(train_rows, args.tok_dir, args.vocab, args.template_src)
    hf_tok = load_hf_tokenizer(args.tok_dir)
    with open(os.path.join(args.tok_dir, "tokenizer.json"), encoding="utf-8") as f:
        ids = {a["content"]: a["id"] for a in json.load(f)["added_tokens"]}
    if args.stage in ("v16", "all", "models"):
        stage_v16(args, hf_tok, ids, train_rows, dev_rows, report)
    if args.stage in ("v17", "all", "models"):
        stage_v17(args, hf_tok, ids, more_rows, train_rows, dev_rows, report)
    if args.stage in ("eval", "all", "models") and args.heldout:
        stage_eval(args, hf_tok, ids, read_jsonl(args.heldout), report)
    report["total_seconds"] = round(time.time() - T0, 1)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    log("done")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench_vs_transformers.py — run `nyxaudit bench` and transformers' generate on the same
Llama-3 shape and workload (random bf16 weights, greedy, one after the other on the same GPUs)
and print both and their ratio. Needs torch + transformers (+ peft for --lora-rank, accelerate for
--gpus > 1); the GPU machine's python3 has them. Never touches the network. CI never runs this.

One GPU, one workload (the original mode; its options and output are unchanged):

  ci/bench_vs_transformers.py --nyxaudit build-gpu/nyxaudit --shape llama3-8b \
      --prompts 4 --prompt-len 2048 --new-tokens 24 --batch 4 [--lora-rank 64] [--layers N]

One GPU, the issue's workload (500 prompts) from samples, each side at its own batch: transformers
--prompts at --batch (4, the model card's), nyxaudit --nyx-prompts at --nyx-batch (16, the audit's
default); both scaled per prompt to --workload prompts:

  ci/bench_vs_transformers.py --nyxaudit build-gpu/nyxaudit --shape llama3-8b --workload 500 \
      --prompts 8 --batch 4 --nyx-prompts 32 --nyx-batch 16 --prompt-len 2000 --new-tokens 24

With --lora-rank R both sides run a rank-R adapter on all 7 projections; transformers' through
PEFT, its adapter weights in bf16 or, --peft-dtype fp32, in fp32 as PEFT's default autocast (and
PeftModel.from_pretrained) leaves them on a bf16 model; the script prints which.

The audit workload (issue 7: 500 prompts x 2000 tokens x 24 new tokens x 3 checkpoints, V16 the
base and V17, Epoch-1 a LoRA adapter each), extrapolated from measurements (audit mode: any of
--gpus, --extrapolate-layers, --audit-prompts, --device cpu):

  ci/bench_vs_transformers.py --shape llama3-70b --gpus 4 --layers 8 --extrapolate-layers 80 \
      --lora-rank 64 --audit-prompts 500 --prompt-len 2000 --new-tokens 24 --batch 4 \
      [--nyxaudit build-gpu/nyxaudit --tp 4 --nyx-prompts 64 --nyx-batch 64 --nyx-generate]

  transformers: the model is built on the meta device and each module materialised on its GPU
  (random bf16 weights, no copy of the model in host memory), dispatched with accelerate's
  dispatch_model over a device map that splits the layers evenly in order (embedding on the first
  GPU, final norm and lm_head on the last), as from_pretrained(device_map=...) does; LoRA through
  PEFT on all 7 projections (adapter weights in bf16, or --peft-dtype fp32: PEFT's default
  autocast, the dtype PeftModel.from_pretrained gives an adapter on a bf16 model). Per batch it
  times generate() for 1 new token (prefill) and for --new-tokens (median of --repeats runs after
  a warm-up), at K = --layers and at 2K layers, and
  extrapolates linearly in the layer count to --extrapolate-layers (per-layer time = (t(2K) -
  t(K)) / K; the rest, embedding, lm_head, GPU hops and generate's own work, is t(K) - K x
  per-layer); then audit time = ceil(audit prompts / batch) x (t_base + adapters x t_lora).
  nyxaudit: `nyxaudit bench --shape S --tp T` with the full layer count on --nyx-prompts prompts
  (--nyx-generate: through the run scheduler, `--generate 1`, as the audit runs; the bench's
  groups prefill --nyx-batch prompts in one step, which at 64 x 2,000 tokens with a rank-64 LoRA
  does not fit an 80 GB card), base and --lora-rank, scaled linearly to the audit prompts:
  audit prompts / nyx prompts x (total_base + adapters x total_lora).
"""
import argparse
import gc
import math
import os
import re
import subprocess
import sys
import time

# NVLink multicast stays off on the shared GPU machines (../.library/device/KINDS.md), here and in
# nyxaudit started from here; and no network, ever.
os.environ["NCCL_NVLS_ENABLE"] = "0"
os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"] = "1"
os.environ["NVSHMEM_DISABLE_NVLS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHAPES = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8),
    "llama3-70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                       num_attention_heads=64, num_key_value_heads=8),
}
# A small shape for a smoke test of audit mode on the CPU (--device cpu); not a nyxaudit shape.
TINY = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2)
VOCAB = {"llama3-8b": 128256, "llama3-70b": 128256, "tiny": 1024}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def run_ours(a, prompts, batch):
    cmd = [a.nyxaudit, "bench", "--shape", a.shape, "--prompts", str(prompts),
           "--prompt-len", str(a.prompt_len), "--new-tokens", str(a.new_tokens),
           "--batch", str(batch), "--lora-rank", str(a.lora_rank)]
    if a.layers:
        cmd += ["--layers", str(a.layers)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(out.stdout)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        sys.exit("nyxaudit bench failed")
    pre = float(re.search(r"prefill: .* in ([0-9.]+) s", out.stdout).group(1))
    m = re.search(r"decode: .*: ([0-9.]+) ms/step", out.stdout)
    dec = float(m.group(1)) if m else float("nan")
    tot = float(re.search(r"total: ([0-9.]+) s", out.stdout).group(1))
    return pre, dec, tot


def run_transformers(a):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=128256, head_dim=128, rms_norm_eps=1e-5, rope_theta=500000.0,
                      max_position_embeddings=8192, **SHAPES[a.shape])
    if a.layers:
        cfg.num_hidden_layers = a.layers
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    if a.lora_rank:
        from peft import LoraConfig, get_peft_model
        lc = LoraConfig(r=a.lora_rank, lora_alpha=2 * a.lora_rank, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                        "up_proj", "down_proj"])
        model = get_peft_model(model, lc)
        model = (model if a.peft_dtype == "fp32" else model.to(torch.bfloat16)).eval()
        print(f"transformers: PEFT LoRA r{a.lora_rank}, adapter weights in "
              f"{lora_dtype(model)}", flush=True)
    g = torch.Generator(device="cuda").manual_seed(1)

    def timed(n_new, batch):
        ids = torch.randint(0, 128256, (batch, a.prompt_len), device="cuda", generator=g)
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                           max_new_tokens=n_new, min_new_tokens=n_new, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - t

    b = min(a.batch, a.prompts)
    timed(2, b)  # warm-up
    groups = (a.prompts + b - 1) // b
    t1 = sorted(timed(1, b) for _ in range(3))[1]
    tn = sorted(timed(a.new_tokens, b) for _ in range(3))[1] if a.new_tokens > 1 else t1
    dec = (tn - t1) / max(a.new_tokens - 1, 1) * 1e3
    return t1 * groups, dec, tn * groups


# ---- audit mode: several GPUs through a device map, layer-count and workload extrapolation ------

def layer_devices(n_layers, devices):
    """Layer i's device: the layers split evenly, in order, over the devices."""
    return [devices[i * len(devices) // n_layers] for i in range(n_layers)]


def make_device_map(n_layers, devices):
    """A device map as accelerate's would be for this model: embedding (and the rotary table,
    computed right after it) on the first device, the layers split evenly in order, the final
    norm and lm_head on the last."""
    dm = {"model.embed_tokens": devices[0], "model.rotary_emb": devices[0]}
    for i, d in enumerate(layer_devices(n_layers, devices)):
        dm[f"model.layers.{i}"] = d
    dm["model.norm"] = devices[-1]
    dm["lm_head"] = devices[-1]
    return dm


def ref_config(shape, n_layers):
    from transformers import LlamaConfig
    dims = dict(TINY if shape == "tiny" else SHAPES[shape])
    dims["num_hidden_layers"] = n_layers
    return LlamaConfig(vocab_size=VOCAB[shape], head_dim=128 if shape != "tiny" else 64,
                       rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=8192,
                       tie_word_embeddings=False, attn_implementation="sdpa", **dims)


def sync(devices):
    import torch
    for d in devices:
        if str(d).startswith("cuda"):
            torch.cuda.synchronize(d)


def build_ref_model(a, n_layers, devices):
    """The model with n_layers layers, random bf16 weights made on their devices (built on the
    meta device, each module of the device map materialised where the map puts it)."""
    import torch
    from transformers import LlamaForCausalLM
    cfg = ref_config(a.shape, n_layers)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to(torch.bfloat16)
    dm = make_device_map(n_layers, devices)
    with torch.no_grad():
        for k, (name, dev) in enumerate(dm.items()):
            if name == "model.rotary_emb":
                continue
            mod = model.get_submodule(name)
            mod.to_empty(device=dev)
            g = torch.Generator(device=dev).manual_seed(1000 + k)
            for prm in mod.parameters():
                if prm.dim() == 1:  # RMSNorm weights
                    prm.fill_(1.0)
                else:
                    prm.normal_(0.0, 0.02, generator=g)
        # non-persistent buffers (the RoPE frequencies) are computed, not materialised
        model.model.rotary_emb = type(model.model.rotary_emb)(config=cfg).to(devices[0])
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers())
            if t.device.type == "meta"]
    if left:
        sys.exit(f"internal: tensors left on the meta device: {left[:5]}")
    model.eval()
    if len(set(dm.values())) > 1:
        from accelerate import dispatch_model
        model = dispatch_model(model, device_map=dm, main_device=devices[0])
        model.hf_device_map = dm
    return model


def lora_dtype(model):
    """The dtype of the PEFT model's first LoRA A weight."""
    for n, t in model.named_parameters():
        if "lora_A" in n:
            return str(t.dtype).replace("torch.", "")
    return "none"


def add_lora(model, rank, peft_dtype="bf16"):
    from peft import LoraConfig, get_peft_model
    lc = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False,
                    target_modules=LORA_TARGETS)
    # adapter weights on each base layer's device, in the base's dtype (bf16) or, as PEFT's
    # default autocast leaves them (PeftModel.from_pretrained too), upcast to fp32
    return get_peft_model(model, lc, autocast_adapter_dtype=peft_dtype == "fp32").eval()


def ref_times(a, models, devices):
    """{k: (t1, tn)}: median seconds of generate() on one batch for 1 and for --new-tokens new
    tokens, for each model of {n_layers: model}; the models' runs interleaved, so that a slow
    phase of the machine (the host's launch work dominates decoding here) hits them alike."""
    import torch
    g = torch.Generator(device=devices[0]).manual_seed(1)

    def timed(model, n_new):
        ids = torch.randint(0, VOCAB[a.shape], (a.batch, a.prompt_len), device=devices[0],
                            generator=g)
        sync(devices)
        t = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                           max_new_tokens=n_new, min_new_tokens=n_new, pad_token_id=0)
        sync(devices)
        return time.perf_counter() - t

    for m in models.values():
        timed(m, 2)  # warm-up
    samples = {k: ([], []) for k in models}
    for _ in range(a.repeats):
        for k, m in models.items():
            samples[k][0].append(timed(m, 1))
            samples[k][1].append(timed(m, a.new_tokens) if a.new_tokens > 1 else samples[k][0][-1])
    return {k: tuple(sorted(s)[a.repeats // 2] for s in v) for k, v in samples.items()}


def ref_measure(a, layer_counts, devices):
    """{n_layers: {'base': (t1, tn), 'lora': (t1, tn)}} per batch, all models built at once."""
    import torch
    models = {}
    for k in layer_counts:
        t = time.perf_counter()
        models[k] = build_ref_model(a, k, devices)
        print(f"transformers: {k} layers built over {', '.join(map(str, devices))} in "
              f"{time.perf_counter() - t:.1f} s (attention {models[k].config._attn_implementation})",
              flush=True)
    res = {k: {} for k in layer_counts}
    for variant in ["base"] + (["lora"] if a.lora_rank else []):
        if variant == "lora":
            models = {k: add_lora(m, a.lora_rank, a.peft_dtype) for k, m in models.items()}
            print(f"transformers: PEFT LoRA r{a.lora_rank}, adapter weights in "
                  f"{lora_dtype(next(iter(models.values())))}", flush=True)
        what = "base" if variant == "base" else f"PEFT LoRA r{a.lora_rank}"
        for k, (t1, tn) in ref_times(a, models, devices).items():
            res[k][variant] = (t1, tn)
            print(f"transformers: {k} layers, {what}: prefill {t1:.3f} s, {a.new_tokens} tokens "
                  f"{tn:.3f} s per batch of {a.batch} (median of {a.repeats})", flush=True)
    for d in devices:
        if str(d).startswith("cuda"):
            print(f"transformers: peak memory {d}: "
                  f"{torch.cuda.max_memory_allocated(d) / 2**30:.1f} GiB", flush=True)
    del models
    gc.collect()
    return res


def ref_audit(a, devices):
    """Per-batch (t1, tn) of base and LoRA at the target layer count, measured or extrapolated."""
    full = (TINY if a.shape == "tiny" else SHAPES[a.shape])["num_hidden_layers"]
    k = a.layers or full
    target = a.extrapolate_layers or k
    if target == k:
        print(f"method: transformers measured directly at {k} layers", flush=True)
        return measure_print(ref_measure(a, [k], devices)[k], target)
    k2 = 2 * k
    print(f"method: transformers measured at {k} and {k2} layers (both models built, their runs "
          f"interleaved) on the same {len(devices)} device(s), extrapolated linearly to "
          f"{target} layers: per-layer = (t({k2}) - t({k})) / {k2 - k}, t({target}) = t({k}) + "
          f"{target - k} x per-layer", flush=True)
    m = ref_measure(a, [k, k2], devices)
    out = {}
    for v in m[k]:
        per = [(y - x) / (k2 - k) for x, y in zip(m[k][v], m[k2][v])]
        fixed = [x - k * p for x, p in zip(m[k][v], per)]
        out[v] = tuple(x + (target - k) * p for x, p in zip(m[k][v], per))
        print(f"transformers {v}: per layer: prefill {per[0] * 1e3:.2f} ms, "
              f"{a.new_tokens} tokens {per[1] * 1e3:.2f} ms; fixed (embedding, lm_head, hops, "
              f"generate): prefill {fixed[0] * 1e3:.1f} ms, {a.new_tokens} tokens "
              f"{fixed[1] * 1e3:.1f} ms", flush=True)
    return measure_print(out, target)


def measure_print(res, target):
    for v, (t1, tn) in res.items():
        print(f"transformers {v} at {target} layers: prefill {t1:.3f} s, total {tn:.3f} s per "
              f"batch", flush=True)
    return res


def nyx_bench(a, lora_rank):
    """nyxaudit bench on the sample with the full layer count: (prefill s, decode ms, total s)."""
    cmd = [a.nyxaudit, "bench", "--shape", a.shape, "--gpu", "0", "--tp", str(a.tp),
           "--prompts", str(a.nyx_prompts), "--prompt-len", str(a.prompt_len),
           "--new-tokens", str(a.new_tokens), "--batch", str(a.nyx_batch),
           "--lora-rank", str(lora_rank)] + (["--generate", "1"] if a.nyx_generate else [])
    print("$ " + " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    sys.stdout.write(out.stdout)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        sys.exit(f"nyxaudit bench failed (exit {out.returncode})")
    if a.nyx_generate:
        gen = re.search(r"^generate .* new in ([0-9.]+) s", out.stdout, re.M)
        if not gen:
            sys.exit("nyxaudit bench --generate 1 printed no 'generate ... in X s' line")
        return float("nan"), float("nan"), float(gen.group(1))
    tot = re.search(r"total: ([0-9.]+) s", out.stdout)
    if not tot:
        sys.exit("nyxaudit bench printed no 'total: X s' line")
    pre = re.search(r"prefill: .* in ([0-9.]+) s", out.stdout)
    dec = re.search(r"decode: .*: ([0-9.]+) ms/step", out.stdout)
    return (float(pre.group(1)) if pre else float("nan"),
            float(dec.group(1)) if dec else float("nan"), float(tot.group(1)))


def audit_main(a):
    n_ckpt = 1 + a.adapters
    work = (f"{a.audit_prompts} prompts x {a.prompt_len} tokens x {a.new_tokens} new x "
            f"{n_ckpt} checkpoints (base + {a.adapters} x LoRA r{a.lora_rank})" if a.lora_rank
            else f"{a.audit_prompts} prompts x {a.prompt_len} tokens x {a.new_tokens} new x "
            f"{n_ckpt} runs of the base")
    print(f"audit workload: {work}, shape {a.shape}", flush=True)
    ours = None
    if a.nyxaudit:  # first, before torch holds the GPUs
        base = nyx_bench(a, 0)
        lora = nyx_bench(a, a.lora_rank) if a.lora_rank else base
        per = (base[2] + a.adapters * lora[2]) / a.nyx_prompts
        ours = per * a.audit_prompts
        via = " through the scheduler" if a.nyx_generate else ""
        dec = (lambda r: "") if a.nyx_generate else (lambda r: f" (decode {r[1]:.2f} ms/step)")
        print(f"nyxaudit sample{via}: {a.nyx_prompts} prompts, batch {a.nyx_batch}, tp {a.tp}: "
              f"base {base[2]:.3f} s{dec(base)}, LoRA r{a.lora_rank} {lora[2]:.3f} s{dec(lora)}",
              flush=True)
        print(f"method: nyxaudit scaled linearly: {a.audit_prompts} / {a.nyx_prompts} x "
              + (f"(base + {a.adapters} x LoRA)" if a.lora_rank else f"{1 + a.adapters} x base"),
              flush=True)
    import torch
    if a.device == "cpu":
        devices = ["cpu"]
    else:
        have = torch.cuda.device_count()
        if have < a.gpus:
            sys.exit(f"--gpus {a.gpus}: only {have} CUDA device(s) visible")
        devices = [f"cuda:{i}" for i in range(a.gpus)]
    res = ref_audit(a, devices)
    groups = math.ceil(a.audit_prompts / a.batch)
    lora_tn = res["lora"][1] if a.lora_rank else res["base"][1]
    ref = groups * (res["base"][1] + a.adapters * lora_tn)
    per_batch = (f"(base + {a.adapters} x LoRA)" if a.lora_rank else f"{1 + a.adapters} x base")
    print(f"method: transformers audit = ceil({a.audit_prompts} / {a.batch}) = {groups} batches "
          f"x {per_batch} per batch", flush=True)
    layers = a.extrapolate_layers or a.layers or "all"
    peft = f" + PEFT ({a.peft_dtype} adapter weights)" if a.lora_rank else ""
    print(f"audit time, transformers{peft} ({len(devices)} "
          f"device(s), device_map, batch {a.batch}, {layers} layers): {ref:.1f} s "
          f"({ref / 60:.1f} min)", flush=True)
    if ours is not None:
        print(f"audit time, nyxaudit (tp {a.tp}, batch {a.nyx_batch}): {ours:.1f} s "
              f"({ours / 60:.1f} min)")
        ok = "met" if ref / ours >= a.target else "NOT met"
        print(f"ratio (transformers / nyxaudit), audit workload: {ref / ours:.2f}x "
              f"(target >= {a.target:g}x: {ok})")


def workload_main(a):
    """--workload W: both sides scaled per prompt to W prompts. transformers runs --prompts at
    --batch (generate() over ceil(prompts / batch) batches); nyxaudit runs --nyx-prompts at
    --nyx-batch, its own batching (the audit's default batch is 16)."""
    ours = run_ours(a, a.nyx_prompts, a.nyx_batch)
    ref = run_transformers(a)
    groups = (a.prompts + min(a.batch, a.prompts) - 1) // min(a.batch, a.prompts)
    ref_w = ref[2] / (groups * min(a.batch, a.prompts)) * a.workload
    ours_w = ours[2] / a.nyx_prompts * a.workload
    lora = (f", LoRA rank {a.lora_rank}, PEFT adapter weights {a.peft_dtype}" if a.lora_rank
            else "")
    print(f"transformers: {a.prompts} prompts at batch {a.batch}: prefill {ref[0]:.3f} s, decode "
          f"{ref[1]:.3f} ms/step, total {ref[2]:.3f} s")
    print(f"nyxaudit:     {a.nyx_prompts} prompts at batch {a.nyx_batch}: prefill {ours[0]:.3f} s, "
          f"decode {ours[1]:.3f} ms/step, total {ours[2]:.3f} s")
    print(f"method: each side's total per prompt x {a.workload} prompts (transformers' batches of "
          f"{a.batch} are independent, so its time is linear in the batch count)")
    print(f"workload {a.workload} x {a.prompt_len} x {a.new_tokens}{lora}: transformers "
          f"{ref_w:.1f} s, nyxaudit {ours_w:.1f} s")
    print(f"ratio (transformers / nyxaudit): total {ref_w / ours_w:.2f}x [{a.shape}, "
          f"{a.workload} x {a.prompt_len} x {a.new_tokens}, transformers batch {a.batch}, "
          f"nyxaudit batch {a.nyx_batch}{lora}]")


def main():
    p = argparse.ArgumentParser(description="nyxaudit bench against transformers (+ PEFT)")
    p.add_argument("--nyxaudit", default=None,
                   help="nyxaudit binary (default build-gpu/nyxaudit in one-GPU mode; in audit "
                        "mode nyxaudit runs only when given)")
    p.add_argument("--shape", default="llama3-8b", choices=sorted(SHAPES) + ["tiny"])
    p.add_argument("--layers", type=int, default=0,
                   help="layers built (audit mode: K, measured at K and 2K when extrapolating)")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--prompt-len", type=int, default=2048)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lora-rank", type=int, default=0)
    p.add_argument("--peft-dtype", choices=["bf16", "fp32"], default="bf16",
                   help="transformers' LoRA adapter weights: bf16 (the base's dtype) or fp32 "
                        "(PEFT's default autocast, as PeftModel.from_pretrained loads an adapter "
                        "onto a bf16 model)")
    p.add_argument("--workload", type=int, default=0,
                   help="one GPU: scale both sides per prompt to this many prompts (e.g. 500); "
                        "nyxaudit then runs --nyx-prompts at --nyx-batch")
    g = p.add_argument_group("audit mode")
    g.add_argument("--gpus", type=int, default=0, help="transformers over GPUs 0..N-1 (device map)")
    g.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu: a smoke test of the transformers side (e.g. --shape tiny)")
    g.add_argument("--extrapolate-layers", type=int, default=0,
                   help="extrapolate transformers' times to this many layers (e.g. 80)")
    g.add_argument("--audit-prompts", type=int, default=0, help="audit prompts (default 500)")
    g.add_argument("--adapters", type=int, default=2, help="LoRA checkpoints besides the base")
    g.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    g.add_argument("--tp", type=int, default=1, help="nyxaudit bench --tp")
    g.add_argument("--nyx-prompts", type=int, default=32, help="nyxaudit sample prompts")
    g.add_argument("--nyx-batch", type=int, default=16, help="nyxaudit batch")
    g.add_argument("--nyx-generate", action="store_true",
                   help="nyxaudit through its run scheduler (bench --generate 1, prompts admitted "
                        "as slots and the step's rows allow, max_batch --nyx-batch), as the audit "
                        "runs, instead of the bench's groups (one prefill step of --nyx-batch "
                        "prompts each)")
    g.add_argument("--target", type=float, default=8.0, help="ratio to meet (issue 7: 8)")
    a = p.parse_args()
    audit = (a.gpus or a.extrapolate_layers or a.audit_prompts or a.device == "cpu"
             or a.tp > 1)
    for name in ("layers", "prompts", "prompt_len", "new_tokens", "batch", "lora_rank", "gpus",
                 "extrapolate_layers", "audit_prompts", "adapters", "tp", "nyx_prompts",
                 "nyx_batch", "workload"):
        if getattr(a, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    if a.repeats < 1 or a.batch < 1 or a.prompts < 1 or a.new_tokens < 1 or a.prompt_len < 1:
        p.error("--repeats, --batch, --prompts, --new-tokens and --prompt-len must be >= 1")
    if audit:
        a.gpus = a.gpus or 1
        a.audit_prompts = a.audit_prompts or 500
        if a.nyx_prompts < 1 or a.nyx_batch < 1:
            p.error("--nyx-prompts and --nyx-batch must be >= 1")
        audit_main(a)
        return
    if a.shape == "tiny":
        p.error("--shape tiny needs audit mode (e.g. --device cpu)")
    a.nyxaudit = a.nyxaudit or "build-gpu/nyxaudit"
    if a.workload:
        workload_main(a)
        return
    ours = run_ours(a, a.prompts, a.batch)
    ref = run_transformers(a)
    print(f"transformers: prefill {ref[0]:.3f} s, decode {ref[1]:.3f} ms/step, total {ref[2]:.3f} s")
    print(f"nyxaudit:     prefill {ours[0]:.3f} s, decode {ours[1]:.3f} ms/step, total {ours[2]:.3f} s")
    print(f"ratio (transformers / nyxaudit): prefill {ref[0] / ours[0]:.2f}x, "
          f"decode {ref[1] / ours[1]:.2f}x, total {ref[2] / ours[2]:.2f}x "
          f"[{a.shape}, {a.prompts} x {a.prompt_len} x {a.new_tokens}, batch {a.batch}, "
          f"LoRA rank {a.lora_rank}]")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench_vs_transformers.py — run `nyxaudit bench` and transformers' generate on the same
Llama-3 shape and workload (random bf16 weights, greedy, on the same GPU, one after the other)
and print both and their ratio. Needs torch + transformers (+ peft for --lora-rank); the GPU
machine's python3 has them. CI never runs this.

  ci/bench_vs_transformers.py --nyxaudit build-gpu/nyxaudit --shape llama3-8b \
      --prompts 4 --prompt-len 2048 --new-tokens 24 --batch 4 [--lora-rank 64] [--layers N]
"""
import argparse
import re
import subprocess
import sys
import time

SHAPES = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8),
    "llama3-70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                       num_attention_heads=64, num_key_value_heads=8),
}


def run_ours(a):
    cmd = [a.nyxaudit, "bench", "--shape", a.shape, "--prompts", str(a.prompts),
           "--prompt-len", str(a.prompt_len), "--new-tokens", str(a.new_tokens),
           "--batch", str(a.batch), "--lora-rank", str(a.lora_rank)]
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
        model = get_peft_model(model, lc).to(torch.bfloat16).eval()
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nyxaudit", default="build-gpu/nyxaudit")
    p.add_argument("--shape", default="llama3-8b", choices=sorted(SHAPES))
    p.add_argument("--layers", type=int, default=0)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--prompt-len", type=int, default=2048)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lora-rank", type=int, default=0)
    a = p.parse_args()
    ours = run_ours(a)
    ref = run_transformers(a)
    print(f"transformers: prefill {ref[0]:.3f} s, decode {ref[1]:.3f} ms/step, total {ref[2]:.3f} s")
    print(f"nyxaudit:     prefill {ours[0]:.3f} s, decode {ours[1]:.3f} ms/step, total {ours[2]:.3f} s")
    print(f"ratio (transformers / nyxaudit): prefill {ref[0] / ours[0]:.2f}x, "
          f"decode {ref[1] / ours[1]:.2f}x, total {ref[2] / ours[2]:.2f}x "
          f"[{a.shape}, {a.prompts} x {a.prompt_len} x {a.new_tokens}, batch {a.batch}, "
          f"LoRA rank {a.lora_rank}]")


if __name__ == "__main__":
    main()

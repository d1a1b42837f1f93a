#!/usr/bin/env python3
"""make_tiny.py — the tiny checkpoints the harness tests audit (golden/harness/tiny/).

A Llama (2 layers, hidden 32, vocabulary 265: the 256 byte-level tokens, the Llama-3 chat special
tokens and one added token "74177, 26, R10.9") in Hugging Face format, F32, with a byte-level BPE
tokenizer without merges (tokenizer.json in the Llama-3 layout), and two PEFT LoRA adapters over
it (r = 4 on all seven projections, small non-zero B) standing in for V17 and Epoch-1.
The layers' weights are small random values; the embeddings and lm_head are set so that the
residual stream is dominated by the current token: after "\n" (the end of the chat header) the
model emits the code-line token, then <|eot_id|>. So every checkpoint answers
"74177, 26, R10.9": a valid line the metrics, gates and reports can work with, in a few
milliseconds per record. The harness tests check the pipeline, resume, caching and exit codes,
not model quality. Needs numpy and safetensors only.

Regenerate: python3 golden/harness/make_tiny.py   (deterministic: seed 20261126)
"""
import json
import os

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tiny")
LLAMA3_TOK = os.path.join(HERE, "..", "..", "..", "shared", "tokenizers", "llama3")
HIDDEN, INTER, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 32, 64, 2, 4, 2, 8
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
            "<|reserved_special_token_2|>"]
CODE_LINE = "74177, 26, R10.9"
CODE_ID = 256 + len(SPECIALS)
EOT_ID = 260
VOCAB = CODE_ID + 1
SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def tokenizer(dirpath):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    added = [{"id": 256 + i, "content": s, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for i, s in enumerate(SPECIALS)]
    added.append({"id": CODE_ID, "content": CODE_LINE, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": False})
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": []},
    }
    write_json(os.path.join(dirpath, "tokenizer.json"), tok)
    with open(os.path.join(LLAMA3_TOK, "tokenizer_config.json"), encoding="utf-8") as f:
        template = json.load(f)["chat_template"]
    write_json(os.path.join(dirpath, "tokenizer_config.json"), {
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
        "chat_template": template, "model_max_length": 8192,
        "tokenizer_class": "PreTrainedTokenizerFast"})


def base(dirpath, rng):
    def w(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)
    embed = w(VOCAB, HIDDEN, scale=0.1)
    head = w(VOCAB, HIDDEN, scale=0.1)
    # "\n" -> the code line -> <|eot_id|>, through dimensions 0 and 1 of the residual stream.
    embed[10, 0] = 10.0
    head[CODE_ID, 0] = 10.0
    embed[CODE_ID, 1] = 10.0
    head[EOT_ID, 1] = 10.0
    t = {"model.embed_tokens.weight": embed, "lm_head.weight": head,
         "model.norm.weight": np.ones(HIDDEN, np.float32)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        t[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        t[p + "self_attn.q_proj.weight"] = w(HEADS * HEAD_DIM, HIDDEN)
        t[p + "self_attn.k_proj.weight"] = w(KV_HEADS * HEAD_DIM, HIDDEN)
        t[p + "self_attn.v_proj.weight"] = w(KV_HEADS * HEAD_DIM, HIDDEN)
        t[p + "self_attn.o_proj.weight"] = w(HIDDEN, HEADS * HEAD_DIM)
        t[p + "mlp.gate_proj.weight"] = w(INTER, HIDDEN)
        t[p + "mlp.up_proj.weight"] = w(INTER, HIDDEN)
        t[p + "mlp.down_proj.weight"] = w(HIDDEN, INTER)
    save_file(t, os.path.join(dirpath, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(dirpath, "config.json"), {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
        "vocab_size": VOCAB, "max_position_embeddings": 16384, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "tie_word_embeddings": False, "attention_bias": False,
        "mlp_bias": False, "bos_token_id": 256, "eos_token_id": [257, 260],
        "torch_dtype": "float32"})
    write_json(os.path.join(dirpath, "generation_config.json"), {
        "bos_token_id": 256, "eos_token_id": [257, 260], "do_sample": False})


def adapter(dirpath, rng, r=4, alpha=8):
    dims = {"q_proj": (HIDDEN, HEADS * HEAD_DIM), "k_proj": (HIDDEN, KV_HEADS * HEAD_DIM),
            "v_proj": (HIDDEN, KV_HEADS * HEAD_DIM), "o_proj": (HEADS * HEAD_DIM, HIDDEN),
            "gate_proj": (HIDDEN, INTER), "up_proj": (HIDDEN, INTER),
            "down_proj": (INTER, HIDDEN)}
    t = {}
    for i in range(LAYERS):
        for mod, (fin, fout) in dims.items():
            part = "mlp" if mod in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            p = f"base_model.model.model.layers.{i}.{part}.{mod}."
            t[p + "lora_A.weight"] = (rng.standard_normal((r, fin)) * 0.05).astype(np.float32)
            t[p + "lora_B.weight"] = (rng.standard_normal((fout, r)) * 0.05).astype(np.float32)
    save_file(t, os.path.join(dirpath, "adapter_model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(dirpath, "adapter_config.json"), {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
        "lora_dropout": 0.0, "use_rslora": False, "use_dora": False, "fan_in_fan_out": False,
        "bias": "none", "modules_to_save": None, "rank_pattern": {}, "alpha_pattern": {},
        "target_modules": sorted(dims), "base_model_name_or_path": "../base",
        "inference_mode": True})


def main():
    rng = np.random.default_rng(20261126)
    for sub in ("base", "adapter_a", "adapter_b"):
        os.makedirs(os.path.join(OUT, sub), exist_ok=True)
    base(os.path.join(OUT, "base"), rng)
    tokenizer(os.path.join(OUT, "base"))
    adapter(os.path.join(OUT, "adapter_a"), rng)
    adapter(os.path.join(OUT, "adapter_b"), rng)


if __name__ == "__main__":
    main()

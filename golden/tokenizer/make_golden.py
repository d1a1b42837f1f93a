#!/usr/bin/env python3
"""Regenerate the tokenizer golden fixtures in golden/tokenizer/ with Hugging Face's own libraries.

    python3 golden/tokenizer/make_golden.py [SHARED_DIR]     (default: ../shared beside the repo)

Writes (all deterministic for a given `tokenizers` / `transformers` version):
  llama3_cases.json   hand-picked texts: ids without and with special tokens, HF's decode of them
  llama3_fuzz.json    3000 random strings drawn from mixed Unicode ranges, with their ids
  llama3_decode.json  id sequences (partial UTF-8, specials) and HF's decode, with and without
                      skip_special_tokens
  llama3_chat.json    chat messages and transformers' apply_chat_template ids
  small/tokenizer.json, small/tokenizer_config.json
                      a small byte-level BPE tokenizer trained here with `tokenizers` (the Llama-3
                      Split + ByteLevel pre-tokenizer, Llama-3's 256 special tokens, a BOS
                      TemplateProcessing post-processor), as the demo checkpoints use
  small_cases.json    the same texts through the small tokenizer
  small_chat.json     chat cases through the small tokenizer (Meta's conditional template)
The reference is `tokenizers` (encode/decode); chat ids come from transformers' apply_chat_template
when transformers is installed, else from rendering the template with jinja2 and encoding it.
"""
import json
import os
import random
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers, Regex

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared")
LLAMA3 = os.path.join(SHARED, "tokenizers", "llama3")

REPORT = (
    "EXAM: CT ABDOMEN AND PELVIS WITH IV CONTRAST (CPT 74177)\r\n"
    "CLINICAL HISTORY: 67-year-old male with RLQ pain; r/o appendicitis. ICD-10: R10.31, K35.80.\r\n"
    "TECHNIQUE: Axial images from the lung bases through the symphysis pubis, 100 mL Omnipaque-350.\n"
    "FINDINGS:\n\tLiver: 14.2 cm, no focal lesion.  Gallbladder: contracted.\n"
    "\tAppendix: dilated to 11 mm with periappendiceal fat stranding; no abscess.\n"
    "IMPRESSION:\n  1. Acute uncomplicated appendicitis.\n  2. Incidental 4 mm RLL nodule (Fleischner)."
)

TEXTS = [
    "", " ", "  ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "a", "A", "hello world", "Hello World!",
    REPORT,
    "71046 26, 74177, 93880-59 RT LT TC; modifiers: 26 50 52 59 76 77 XS XU",
    "C34.90, Z87.891, J18.9, I26.99, S72.001A, M54.50, R91.1, N20.0",
    "CPT 70450 ICD-10-CM G43.909\nCPT 70551, 70553",
    "75635 36247 37224 37226", "G0297 (LDCT lung screening), 71271",
    "The patient's lungs aren't clear; they're stable. I'm sure we'll see, you'd agree, we've done it.",
    "IT'S DON'T THEY'RE I'M WE'LL YOU'D WE'VE", "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D",
    "'ſ 'K ’s ‘quoted’ “double”", "rock'n'roll o'clock '''''", "'", "''s",
    "12345678901234567890123456789012345678901234567890", "3.14159265358979 -42 +7 1e10 0x1F",
    "1,234,567.89 $12.50 €9,99 ¥100 £5", "phone 555-123-4567, MRN 000123456, acc# 987654321",
    "supercalifragilisticexpialidocious " * 3,
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 4,
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!???...,,,;;;:::---___===+++***&&&%%%$$$###@@@", "...!?", "--->", "<<<>>>", "((()))[[]]{{}}",
    "a  b   c    d     e", "trailing spaces   ", "   leading", "tabs\tand\t\ttabs", "\t\t\tx",
    "line1\nline2\r\nline3\rline4", "\r\r\n\n\r", "x \n\n y", "end with newline\n",
    "mixed \u00a0nbsp\u2003em\u3000ideographic\u2028ls\u2029ps\u0085nel", "\u180e\u200b\ufeff zero widths",
    "Ünïcödé façade naïve café résumé Øre Åse", "Straße ß ẞ İstanbul ı",
    "Ελληνικά: ακτινογραφία θώρακος", "Русский: рентгенография грудной клетки",
    "العربية: تصوير بالأشعة", "עברית: צילום חזה", "हिन्दी: छाती का एक्स-रे", "ไทย: เอกซเรย์ทรวงอก",
    "中文：胸部X光检查，未见异常。", "日本語：胸部レントゲン検査", "한국어: 흉부 엑스레이", "ქართული ენა",
    "Tiếng Việt: chụp X-quang ngực", "አማርኛ", "ᓀᐦᐃᔭᐍᐏᐣ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒜𝒷𝒸",
    "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇺🇸🇫🇷 ❤️ 🫁 🩻", "🏥🩺💉🦴", "a😀b", "😀" * 10,
    "combining: e\u0301 a\u0308 n\u0303 \u0915\u093f", "Zalgo: Z\u0351\u036b\u0343a\u0352l\u0350g\u0360o",
    "new letters: \u1c89\u1c8a \ua7cb\ua7cc \U000105c0\U000105c1 \U00031350\U00031351 a\U00031350b",
    "new digits: \U0001ccf0\U0001ccf1 1\U0001ccf0 \U00011f50\U00011f51\U00011f52\U00011f53",
    "digits: ٠١٢٣٤٥٦٧٨٩ ०१२३ ０１２３ ⅠⅡⅢ ½ ²³",
    "<|begin_of_text|>", "<|eot_id|>", "text <|eot_id|> more", "<|start_header_id|>user<|end_header_id|>\n\nhi",
    "<|begin_of_text|><|begin_of_text|>", "<|eot_id|><|eot_id|>x", "<|reserved_special_token_5|>",
    "<|reserved_special_token_250|>", "<|eot_id", "<|not_a_token|>", "<|<|eot_id|>|>", "< |eot_id| >",
    "x<|end_of_text|>y", "<|finetune_right_pad_id|>",
    "control \x01\x02\x1f\x7f chars", "nul\x00byte", "\ue000\uf8ff private use \U000f0000",
    "\ufffd replacement \ufffe\uffff", "http://example.com/path?q=1&r=2#frag", "user@example.org",
    "def f(x):\n    return x ** 2  # comment\n", "{\"json\": [1, 2, 3], \"k\": null}",
    "a" * 2000, " " * 300, "\n" * 50, "9" * 101, "ab " * 200,
]


def fuzz_strings(n, seed=20261126):
    rng = random.Random(seed)
    pools = [
        (0x20, 0x7E), (0x20, 0x7E), (0x20, 0x7E), (0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A),
        (0x00, 0x1F), (0x80, 0xFF), (0x100, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
        (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x10A0, 0x10FF),
        (0x1100, 0x11FF), (0x1680, 0x16A0), (0x1800, 0x18AF), (0x1C80, 0x1C8F), (0x2000, 0x206F),
        (0x20A0, 0x20CF), (0x2100, 0x218F), (0x2190, 0x23FF), (0x2460, 0x24FF), (0x3000, 0x30FF),
        (0x4E00, 0x9FFF), (0xA700, 0xA7FF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xFB00, 0xFFFF),
        (0x10000, 0x1007F), (0x105C0, 0x105FF), (0x10D40, 0x10D8F), (0x11F00, 0x11F5F),
        (0x16100, 0x1613F), (0x1CCF0, 0x1CCFF), (0x1D400, 0x1D7FF), (0x1E4D0, 0x1E5FF),
        (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0x31350, 0x323AF), (0xE0000, 0xE007F),
        (0xF0000, 0xF00FF), (0x10FF00, 0x10FFFF),
    ]
    words = ["'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "'ſ", "\r\n", "\n", "  ", "\t",
             " the", "CPT", "74177", "R10.31", "<|eot_id|>", "<|begin_of_text|>", "\u00a0",
             "\u3000", "\u0085", "\u180e", "\u200d", "\ufe0f", "😀", "👍🏽"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.2:
                parts.append(rng.choice(words))
                continue
            lo, hi = rng.choice(pools)
            for _ in range(rng.randint(1, 4)):
                cp = rng.randint(lo, hi)
                if 0xD800 <= cp <= 0xDFFF:
                    cp = 0x20
                parts.append(chr(cp))
        out.append("".join(parts))
    return out


CHATS = [
    [{"role": "user", "content": "Code this report."}],
    [{"role": "system", "content": "You are a radiology coding assistant. Reply with one line: "
                                   "CPT[ CPT2], MOD, ICD1, ICD2, ..."},
     {"role": "user", "content": REPORT}],
    [{"role": "system", "content": "  padded system  \n"},
     {"role": "user", "content": "\t\n  CT head without contrast 70450  \r\n"},
     {"role": "assistant", "content": "70450, 26, R51.9"},
     {"role": "user", "content": "And the MRI?"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "\u3000\u00a0 wide spaces \u2028\u0085"}],
    [{"role": "user", "content": "\u200b zero width is not trimmed \u200b"}],
    [{"role": "user", "content": "emoji 🩻 and ünïcödé, 中文"}],
    [{"role": "tool", "content": "{\"codes\": [\"74177\"]}"}],
    [{"role": "user", "content": "inner <|eot_id|> token"}],
]


def write(name, obj):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


def cases_for(tok, texts):
    out = []
    for s in texts:
        ids = tok.encode(s, add_special_tokens=False).ids
        sp = tok.encode(s, add_special_tokens=True).ids
        out.append({"text": s, "ids": ids, "ids_special": sp,
                    "decoded": tok.decode(ids, skip_special_tokens=False),
                    "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    return out


def chat_ids(tok_dir, tok, chats, template):
    """apply_chat_template ids (transformers), falling back to jinja2 + tokenizers."""
    out = []
    try:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(tok_dir)
    except Exception:  # transformers missing or failing: render with jinja2 ourselves
        hf = None
    for msgs in chats:
        for gen in (False, True):
            if hf is not None:
                r = hf.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen)
                ids = list(r["input_ids"] if not isinstance(r, list) else r)
                text = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            else:
                import jinja2
                env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
                text = env.from_string(template).render(messages=msgs, add_generation_prompt=gen,
                                                        bos_token="<|begin_of_text|>")
                ids = tok.encode(text, add_special_tokens=False).ids
            out.append({"messages": msgs, "add_generation_prompt": gen, "text": text, "ids": ids})
    return out


META_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant"
    "<|end_header_id|>\n\n' }}{% endif %}")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def special_names():
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
             "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
             "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    names += ["<|reserved_special_token_%d|>" % i for i in range(3, 248)]
    return names


def train_small():
    corpus = [REPORT] * 3 + TEXTS + fuzz_strings(400, seed=7)
    rng = random.Random(11)
    organs = ["liver", "spleen", "kidney", "lung", "heart", "brain", "spine", "pelvis", "knee"]
    for i in range(3000):
        corpus.append("CT %s %s: %d mm lesion, CPT %d, ICD-10 %s%02d.%d. No acute findings.\n" % (
            rng.choice(organs), rng.choice(["with", "without"]), rng.randint(1, 90),
            rng.randint(70010, 79999), rng.choice("CDIJKMNRSZ"), rng.randint(0, 99),
            rng.randint(0, 9)))
    tok = Tokenizer(models.BPE(ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(special_names())
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    d = os.path.join(HERE, "small")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
    cfg = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
           "chat_template": META_TEMPLATE, "tokenizer_class": "PreTrainedTokenizerFast",
           "clean_up_tokenization_spaces": False, "model_max_length": 8192}
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return Tokenizer.from_file(os.path.join(d, "tokenizer.json")), d


def decode_cases(tok):
    rng = random.Random(5)
    seqs = [[], [76460], [76460, 222], [76460, 128009, 222], [128000, 9906, 128009], [978],
            [15339, 128006, 882, 128007, 271], [220, 220], [127999, 128255], [33, 126, 127, 128]]
    for _ in range(200):
        seqs.append([rng.randrange(0, 128256) for _ in range(rng.randint(1, 8))])
    for _ in range(100):  # byte tokens: lots of invalid UTF-8
        seqs.append([rng.randrange(0, 256) for _ in range(rng.randint(1, 12))])
    return [{"ids": s, "decoded": tok.decode(s, skip_special_tokens=False),
             "decoded_skip": tok.decode(s, skip_special_tokens=True)} for s in seqs]


def main():
    import tokenizers
    tok = Tokenizer.from_file(os.path.join(LLAMA3, "tokenizer.json"))
    meta = {"tokenizers": tokenizers.__version__}
    write("llama3_cases.json", {"meta": meta, "cases": cases_for(tok, TEXTS)})
    fz = fuzz_strings(3000)
    write("llama3_fuzz.json", {"meta": meta, "cases": [
        {"text": s, "ids": tok.encode(s, add_special_tokens=False).ids} for s in fz]})
    write("llama3_decode.json", {"meta": meta, "cases": decode_cases(tok)})
    with open(os.path.join(LLAMA3, "tokenizer_config.json")) as f:
        template = json.load(f)["chat_template"]
    write("llama3_chat.json", {"meta": meta, "cases": chat_ids(LLAMA3, tok, CHATS, template)})
    small, d = train_small()
    write("small_cases.json", {"meta": meta, "cases": cases_for(small, TEXTS + fz[:300])})
    write("small_chat.json", {"meta": meta, "cases": chat_ids(d, small, CHATS, META_TEMPLATE)})


if __name__ == "__main__":
    main()

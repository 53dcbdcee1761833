#!/usr/bin/env python3
# ruff: noqa  (copied verbatim from ../shared/device/make_dummy_model.py; kept as is so the two stay comparable)
"""Write a Qwen2.5-shaped model folder that vLLM can serve with --load-format dummy.

Writes config.json, generation_config.json, tokenizer.json, tokenizer_config.json
(no weights).  Needs only the `tokenizers` package (plus stdlib).  Deterministic:
the same preset always gives byte-identical files, so nothing has to be carried.

usage: make_dummy_model.py PRESET OUTDIR     PRESET in: qwen2.5-0.5b qwen2.5-1.5b qwen2.5-7b
"""

import json, os, sys

PRESETS = {  # values of the public Qwen2.5-*-Instruct config.json files
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_attention_heads=14,
        num_hidden_layers=24,
        num_key_value_heads=2,
        max_window_layers=21,
        tie_word_embeddings=True,
        vocab_size=151936,
    ),
    "qwen2.5-1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_attention_heads=12,
        num_hidden_layers=28,
        num_key_value_heads=2,
        max_window_layers=21,
        tie_word_embeddings=True,
        vocab_size=151936,
    ),
    "qwen2.5-7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_attention_heads=28,
        num_hidden_layers=28,
        num_key_value_heads=4,
        max_window_layers=28,
        tie_word_embeddings=False,
        vocab_size=152064,
    ),
}
N_REGULAR = 151643  # Qwen2: ids 0..151642 are BPE tokens
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 151643, 151644, 151645
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build_vocab_and_merges(n_regular):
    b2u = bytes_to_unicode()
    # order the 256 byte symbols so that common text bytes come first
    pri = (
        b" etaoinshrdlcumwfgypbvkjxqz"
        + b"ETAOINSHRDLCUMWFGYPBVKJXQZ"
        + b"0123456789.,'\"-:;!?()\n\t_/=<>[]{}#*+&%$@\\|~`^"
    )
    order = [b2u[b] for b in pri] + [b2u[b] for b in range(256) if b not in pri]
    vocab = {}
    merges = []
    for ch in order:
        vocab[ch] = len(vocab)
    # round 1: all pairs of byte symbols; round 2: pair + symbol; stop at n_regular
    pairs = [(a, b) for a in order for b in order]
    for a, b in pairs:
        if len(vocab) >= n_regular:
            break
        vocab[a + b] = len(vocab)
        merges.append((a, b))
    for a, b in pairs:
        for c in order:
            if len(vocab) >= n_regular:
                break
            t = a + b + c
            if t not in vocab:
                vocab[t] = len(vocab)
                merges.append((a + b, c))
        if len(vocab) >= n_regular:
            break
    assert len(vocab) == n_regular
    return vocab, merges


def main(preset, out):
    from tokenizers import Tokenizer, AddedToken, models, pre_tokenizers, decoders, Regex

    p = PRESETS[preset]
    V = p["vocab_size"]
    os.makedirs(out, exist_ok=True)
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "use_sliding_window": False,
        "use_cache": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.43.1",
        **p,
    }
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
    json.dump(
        {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643},
        open(os.path.join(out, "generation_config.json"), "w"),
        indent=2,
    )
    vocab, merges = build_vocab_and_merges(N_REGULAR)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=False, ignore_merges=False))
    # Qwen2's pre-tokenizer: split regex, then byte-level mapping without its own regex
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
                ),
                behavior="isolated",
                invert=False,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    extra = SPECIALS + [f"<|reserved_{i}|>" for i in range(V - N_REGULAR - len(SPECIALS))]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in extra])
    assert tok.get_vocab_size() == V, (tok.get_vocab_size(), V)
    tok.save(os.path.join(out, "tokenizer.json"))
    json.dump(
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "model_max_length": 32768,
            "clean_up_tokenization_spaces": False,
            "add_bos_token": False,
            "add_prefix_space": False,
            "split_special_tokens": False,
            "errors": "replace",
            "chat_template": CHAT_TEMPLATE,
        },
        open(os.path.join(out, "tokenizer_config.json"), "w"),
        indent=2,
    )
    print(f"wrote {out}: vocab {V}, {len(merges)} merges")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in PRESETS:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

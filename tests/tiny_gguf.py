"""Writes a tiny random-weight LLaMA model as GGUF, for tests: nothing is downloaded.

    python tests/tiny_gguf.py OUT.gguf [--width 64 --layers 2]

A SentencePiece-style vocabulary with byte fallback, so any text tokenizes; the high byte tokens
are marked unused so the random model cannot emit broken UTF-8 (llama-cpp-python would otherwise
keep generating past max_tokens to finish a character). A llama-2 style chat template sits in
the metadata, so llama.cpp renders chats the way it would for a real llama-2-chat file.
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

import numpy as np

LLAMA2_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<<SYS>>\n{{ message['content'] }}\n<</SYS>>\n\n"
    "{% elif message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]"
    "{% elif message['role'] == 'assistant' %} {{ message['content'] }} {{ eos_token }}"
    "{% endif %}{% endfor %}"
)

def _words() -> list[str]:
    """English words of the benchmark and the prompts, so they tokenize to about one token each, as
    with a real model's vocabulary (letters alone would make every sentence several times longer)."""
    from iml_core.prompts import PROMPTS
    from iml_core.tasks import CREATURE_ATTRIBUTES, MULTI_VALUED_ATTRIBUTES, SPECIES

    text = " ".join([*PROMPTS.values(), *SPECIES, "This creature", "Your notes", "Which class is it"]
                    + [p for a in CREATURE_ATTRIBUTES + MULTI_VALUED_ATTRIBUTES for p in a.phrases]
                    + [f"{a.name} is {v}" for a in CREATURE_ATTRIBUTES + MULTI_VALUED_ATTRIBUTES for v in a.values])
    return sorted({w for w in "".join(c if c.isalpha() else " " for c in text).split() if len(w) > 1})


WORDS = _words()


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.UNUSED if byte >= 0x80 else gguf.TokenType.BYTE)
    pieces = ["▁"] + list(string.ascii_letters + string.digits + string.punctuation)
    pieces += ["▁" + c for c in string.ascii_letters + string.digits + string.punctuation]
    # llama.cpp's SentencePiece tokenizer builds a word by merging neighbours that are themselves
    # tokens, so every beginning of a word must be one too.
    pieces += [word[:end] for w in WORDS for word in ("▁" + w, w) for end in range(2, len(word) + 1)]
    for piece in dict.fromkeys(pieces):
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
    # Longer pieces score higher, so the tokenizer prefers whole words to letters.
    scores = [0.0] * 3 + [-1000.0] * 256 + [float(len(t)) - 100.0 for t in tokens[259:]]
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama(path: str | Path, width: int = 64, layers: int = 2, heads: int = 4, ff: int = 128,
                     context: int = 4096, seed: int = 0) -> Path:
    import gguf

    path = Path(path)
    tokens, scores, types = vocabulary()
    rng = np.random.default_rng(seed)
    head_dim = width // heads

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(width)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(LLAMA2_CHAT_TEMPLATE)

    def weights(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer.add_tensor("token_embd.weight", weights(len(tokens), width))
    for block in range(layers):
        writer.add_tensor(f"blk.{block}.attn_norm.weight", np.ones(width, dtype=np.float32))
        writer.add_tensor(f"blk.{block}.attn_q.weight", weights(heads * head_dim, width))
        writer.add_tensor(f"blk.{block}.attn_k.weight", weights(heads * head_dim, width))
        writer.add_tensor(f"blk.{block}.attn_v.weight", weights(heads * head_dim, width))
        writer.add_tensor(f"blk.{block}.attn_output.weight", weights(width, heads * head_dim))
        writer.add_tensor(f"blk.{block}.ffn_norm.weight", np.ones(width, dtype=np.float32))
        writer.add_tensor(f"blk.{block}.ffn_gate.weight", weights(ff, width))
        writer.add_tensor(f"blk.{block}.ffn_up.weight", weights(ff, width))
        writer.add_tensor(f"blk.{block}.ffn_down.weight", weights(width, ff))
    writer.add_tensor("output_norm.weight", np.ones(width, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    print(write_tiny_llama(args.out, width=args.width, layers=args.layers))

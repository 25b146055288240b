"""Words of the notes: counting them, cutting at a word, and a word-level diff.

A word is a run of non-space characters; the text between words (spaces, newlines) is kept as the
author wrote it, so cutting notes at a word never reflows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from diff_match_patch import diff_match_patch

WORD = re.compile(r"\S+")
# Each distinct token becomes one code point from here on, where no real text lives.
PRIVATE_USE_PLANE = 0x100000


def words(text: str) -> list[str]:
    return WORD.findall(text)


def word_count(text: str) -> int:
    return len(words(text))


REPEAT_NGRAM = 3  # words per phrase when measuring repetition
REPEAT_MIN_PHRASES = 10  # shorter notes are not judged


def repetition(text: str, n: int = REPEAT_NGRAM) -> float:
    """The share of the text's n-word phrases (case and punctuation ignored) that repeat one said
    before in it: near 0 for notes that state each thing once, near 1 for one sentence said over and
    over ("the creature with fur is Zindle, the creature with feathers is Zindle, ..."); 0 for
    notes too short to judge."""
    tokens = [t for t in (w.strip(".,;:!?()[]\"'").lower() for w in words(text)) if t]
    phrases = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    if len(phrases) < REPEAT_MIN_PHRASES:
        return 0.0
    return 1 - len(set(phrases)) / len(phrases)


def take_words(text: str, n: int) -> str:
    """The text up to and including its n-th word (all of it when it has fewer)."""
    if n <= 0:
        return ""
    end = 0
    for index, match in enumerate(WORD.finditer(text), start=1):
        end = match.end()
        if index == n:
            break
    return text[:end] if end else ""


@dataclass(frozen=True)
class Segment:
    op: str  # "equal", "insert" or "delete"
    text: str


def word_diff(old: str, new: str) -> list[Segment]:
    """Whole-word diff segments: each word (and each run of spaces) is one symbol for diff-match-patch,
    so changes never split a word, and semantic clean-up merges neighbouring changes."""
    tokens: dict[str, str] = {}
    symbols: list[str] = []

    def encode(text: str) -> str:
        out = []
        for token in re.findall(r"\S+|\s+", text):
            if token not in tokens:
                tokens[token] = chr(PRIVATE_USE_PLANE + len(symbols))
                symbols.append(token)
            out.append(tokens[token])
        return "".join(out)

    old_code, new_code = encode(old), encode(new)
    engine = diff_match_patch()
    engine.Diff_Timeout = 0
    diffs = engine.diff_main(old_code, new_code, False)
    engine.diff_cleanupSemantic(diffs)
    decoded = {symbol: token for token, symbol in tokens.items()}
    ops = {0: "equal", 1: "insert", -1: "delete"}
    return [Segment(ops[op], "".join(decoded[ch] for ch in code)) for op, code in diffs if code]


def words_changed(old: str, new: str) -> int:
    """Words deleted plus words inserted: 0 for identical notes, W_old + W_new for a total rewrite."""
    return sum(word_count(s.text) for s in word_diff(old, new) if s.op != "equal")

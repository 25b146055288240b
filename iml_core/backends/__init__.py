"""Model backends behind one small interface: a chat that must answer with one of some labels,
and a chat that answers with text that should begin with a given prefix.

The backends by name, with the settings each reads, are in iml_core.registry."""

from __future__ import annotations

import urllib.parse

from dataclasses import dataclass
from typing import Protocol, Sequence

from iml_core.errors import RunFailed

Messages = list[dict[str, str]]


class BackendError(RunFailed):
    """The model server or file failed in a way retries did not fix; the run stops `failed`."""


class PromptTooLong(RunFailed):
    """A prompt and its answer do not fit the model's context. It comes up mid-run, after steps
    were committed, so the run stops `failed` (it is no UserError, which writes nothing); its
    message names the setting to change (the context length, the note cap, the in-context
    examples) before resuming or forking it."""


def prompt_too_long(tokens: int, max_tokens: int, context: int) -> PromptTooLong:
    return PromptTooLong(f"the prompt has {tokens} tokens and the answer may take {max_tokens}, more than the context "
                         f"of {context}; raise n_ctx, or lower the note word cap or the in-context examples")


@dataclass(frozen=True)
class Completion:
    raw: str  # exactly what the model returned
    text: str  # the usable answer: the label, or the text (a local model's continuation after its prefix)
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0  # prompt tokens the server did not have to evaluate again
    sentence: int | None = None  # for labels asked with `sentences`: the notes sentence the model named


# Where an OpenAI-compatible backend sends its calls when no base URL is given.
OPENAI_URL = "https://api.openai.com/v1"
# A plain-text answer naming its notes sentence: "Florp | line 2". The model is asked for a "line": the
# prompts stored with runs say so, and their cached answers are keyed by those prompts.
LINE_SEPARATOR = " | line "


def split_label_sentence(text: str, labels: Sequence[str], sentences: int) -> tuple[str, int | None]:
    """The label ('' when it is none of `labels`) and the unit number (None when absent or out of
    range) of a plain-text answer."""
    text = text.strip()
    label, separator, number = text.rpartition(LINE_SEPARATOR)
    if not separator:
        label, number = text, ""
    sentence = int(number) if number.strip().isdigit() and 1 <= int(number) <= sentences else None
    return (label.strip() if label.strip() in labels else ""), sentence


class Backend(Protocol):
    # Everything besides the request that decides the output; part of the response-cache key.
    identity: dict
    description: str
    max_parallel: int  # requests worth sending at once

    def label(self, messages: Messages, labels: Sequence[str], *, temperature: float, seed: int,
              max_tokens: int, sentences: int = 0) -> Completion:
        """One of `labels`; with `sentences` > 0, also the number (1..sentences) of the notes sentence relied on."""

    def text(self, messages: Messages, *, temperature: float, seed: int, max_tokens: int,
             prefix: str = "", grammar: str | None = None) -> Completion:
        """Free text. A model run here is made to continue `prefix` (the momentum prefix), so its text
        begins with it; a remote server cannot be made to, so it ignores `prefix` and the prompt
        asks for it instead (the loop repairs and records a missing prefix either way). A model run
        here writes only what the GBNF `grammar` allows; a remote server is asked for text, and the
        caller checks it (a decision list: its parser)."""

    def cost(self, tokens_in: int, tokens_out: int) -> float: ...


def without_credentials(url: str) -> str:
    """A URL as it may be shown or stored: without a user and password, or a query string (where
    some services take a key)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.netloc:
        return url
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))

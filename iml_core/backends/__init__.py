"""Model backends behind one small interface: a chat that must answer with one of some labels,
and a chat that answers with text (optionally forced to begin with a given prefix)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from iml_core.errors import RunFailed, UserError

if TYPE_CHECKING:
    from iml_core.config import RunConfig

Messages = list[dict[str, str]]


class BackendError(RunFailed):
    """The model server or file failed in a way retries did not fix; the run stops `failed`."""


class PromptTooLong(UserError):
    """A prompt and its answer do not fit the model's context: a setting to change (the context
    length, the note cap, the in-context examples), not a failure of the model."""


def prompt_too_long(tokens: int, max_tokens: int, context: int) -> PromptTooLong:
    return PromptTooLong(f"the prompt has {tokens} tokens and the answer may take {max_tokens}, more than the context "
                         f"of {context}; raise n_ctx, or lower the note word cap or the in-context examples")


@dataclass(frozen=True)
class Completion:
    raw: str  # exactly what the model returned
    text: str  # the usable answer: the label, or the text (with a forced prefix in front)
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0  # prompt tokens the server did not have to evaluate again
    line: int | None = None  # for labels asked with `lines`: the notes unit the model named


LINE_SEPARATOR = " | line "  # a plain-text answer naming its notes unit: "Florp | line 2"


def split_label_line(text: str, labels: Sequence[str], lines: int) -> tuple[str, int | None]:
    """The label ('' when it is none of `labels`) and the unit number (None when absent or out of
    range) of a plain-text answer."""
    text = text.strip()
    label, separator, number = text.rpartition(LINE_SEPARATOR)
    if not separator:
        label, number = text, ""
    line = int(number) if number.strip().isdigit() and 1 <= int(number) <= lines else None
    return (label.strip() if label.strip() in labels else ""), line


class Backend(Protocol):
    # Everything besides the request that decides the output; part of the response-cache key.
    identity: dict
    description: str
    max_parallel: int  # requests worth sending at once

    def label(self, messages: Messages, labels: Sequence[str], *, temperature: float, seed: int,
              max_tokens: int, lines: int = 0) -> Completion:
        """One of `labels`; with `lines` > 0, also the number (1..lines) of the notes unit relied on."""

    def text(self, messages: Messages, *, temperature: float, seed: int, max_tokens: int,
             prefix: str = "") -> Completion: ...

    def cost(self, tokens_in: int, tokens_out: int) -> float: ...


# --- the registry: every backend by name, with the settings it reads ---------------------------

def _llama_server(config: "RunConfig") -> Backend:
    from iml_core.backends.llama_server import LlamaServerBackend
    return LlamaServerBackend(config.model, n_gpu_layers=config.n_gpu_layers, n_ctx=config.n_ctx,
                              n_threads=config.n_threads or None, chat_format=config.chat_format or None,
                              repeat_penalty=config.repeat_penalty, slots=config.slots)


def _llama_cpp(config: "RunConfig") -> Backend:
    from iml_core.backends.llama_cpp import LlamaCppBackend
    return LlamaCppBackend(config.model, n_gpu_layers=config.n_gpu_layers, n_ctx=config.n_ctx,
                           n_threads=config.n_threads or None, chat_format=config.chat_format or None,
                           repeat_penalty=config.repeat_penalty)


def _openai(config: "RunConfig") -> Backend:
    from iml_core.backends.openai_compat import OpenAICompatBackend
    return OpenAICompatBackend(config.model, base_url=config.base_url, api_key=os.environ.get("OPENAI_API_KEY"),
                               timeout=config.timeout, max_retries=config.max_retries,
                               max_parallel=config.max_parallel, structured_output=config.structured_output,
                               price_in=config.price_in, price_out=config.price_out,
                               frequency_penalty=config.frequency_penalty, presence_penalty=config.presence_penalty)


@dataclass(frozen=True)
class BackendKind:
    name: str
    where: str  # where the model runs, in a user's words
    settings: tuple[str, ...]  # the run settings it reads besides the model and the temperature
    sampling: tuple[str, ...]  # those of them that shape what the model writes
    build: Callable[["RunConfig"], Backend]
    # Where the model's process is: "managed" (a server this engine starts on this machine), "in
    # process" (this one), or "remote" (a server at base_url that someone else runs).
    process: str

    @property
    def runs_here(self) -> bool:
        """Whether the model runs on this machine (a GGUF file, which llama.cpp must be built for)."""
        return self.process != "remote"

    def endpoint(self, config: "RunConfig") -> str | None:
        """The model server a run calls (for the per-server cap); None for a model run in this process.
        A managed llama-server is named by its model: the runs of one model share one server."""
        if self.process == "remote":
            return config.base_url or "https://api.openai.com/v1"
        return f"{self.name} {config.model}" if self.process == "managed" else None


BACKENDS = {kind.name: kind for kind in (
    BackendKind("llama-server", "On this machine: a GGUF file run by llama.cpp in a server of its own "
                                "(a crash there stops one run, not the app)",
                ("n_gpu_layers", "n_ctx", "n_threads", "chat_format", "repeat_penalty", "slots"), ("repeat_penalty",),
                _llama_server, "managed"),
    BackendKind("llama-cpp", "On this machine: a GGUF file run by llama.cpp inside this process",
                ("n_gpu_layers", "n_ctx", "n_threads", "chat_format", "repeat_penalty"), ("repeat_penalty",),
                _llama_cpp, "in process"),
    BackendKind("openai", "On a server: OpenAI, or any OpenAI-compatible one (vLLM, Ollama, LM Studio, "
                          "llama.cpp server)",
                ("base_url", "max_parallel", "timeout", "max_retries", "structured_output", "price_in", "price_out",
                 "frequency_penalty", "presence_penalty"), ("frequency_penalty", "presence_penalty"), _openai,
                "remote"),
)}

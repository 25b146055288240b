"""A GGUF model run in this process by llama.cpp (llama-cpp-python): the named alternative to the
managed server (backends/llama_server.py), and what its per-call parity is measured against. A
crash in llama.cpp here takes this whole process with it.

We render the chat ourselves with the model's own template and send raw completions, which lets
us (1) force a revision to begin with the momentum prefix by appending it to the rendered prompt,
(2) force labels with a GBNF grammar, and (3) count how many prompt tokens llama.cpp reuses from
its KV cache (the longest common prefix with the previous prompt).
"""

from __future__ import annotations

import atexit
import functools
import threading
from pathlib import Path
from typing import Sequence

from iml_core.grammar import gbnf_literal
from iml_core.backends import LINE_SEPARATOR, Completion, Messages, prompt_too_long, split_label_sentence
from iml_core.errors import UserError

GGUF_MAGIC = b"GGUF"

_models: dict[tuple, tuple[object, threading.Lock]] = {}
_models_lock = threading.Lock()


@atexit.register
def _close_models() -> None:
    # Freed by the garbage collector after llama_cpp's own module is torn down, a model prints a
    # TypeError at exit; closing them first keeps the exit quiet.
    with _models_lock:
        for llm, _ in _models.values():
            llm.close()
        _models.clear()


def compute_of(build, n_gpu_layers: int) -> str:
    """Where a model's layers run: the build's device (cuda-ARCH), or the CPU when none is offloaded."""
    return build.compute if n_gpu_layers != 0 else "cpu"


def check_model_file(path: str | Path) -> Path:
    """Refuses, before any run starts, a path that is missing, a folder, unreadable or not GGUF."""
    path = Path(path).expanduser()
    if not str(path).strip() or not path.exists():
        raise UserError(f"no model file at {path}; give the path of a .gguf file")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the path of a .gguf file inside it")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise UserError(f"cannot read the model file {path} ({e.strerror}); check its permissions") from None
    if magic != GGUF_MAGIC:
        raise UserError(f"{path} is not a GGUF model (it does not start with 'GGUF'); "
                        "llama.cpp needs a .gguf file, e.g. a Q4_K_M quantization")
    return path


def label_grammar(labels: Sequence[str], sentences: int = 0) -> str:
    """Exactly one label; with `sentences`, then " | line " and a sentence number from 1 to sentences."""
    grammar = "label ::= " + " | ".join(gbnf_literal(label) for label in labels)
    if not sentences:
        return "root ::= label\n" + grammar
    numbers = " | ".join(gbnf_literal(str(n)) for n in range(1, sentences + 1))
    return f"root ::= label {gbnf_literal(LINE_SEPARATOR)} number\n{grammar}\nnumber ::= {numbers}"


@functools.lru_cache(maxsize=32)
def compiled_label_grammar(labels: tuple[str, ...], sentences: int):
    """Compiled once per label set and notes length (the samples of a step share both); a function
    of its own, so the cache keeps no backend, and no model, alive."""
    from iml_core.llama_build import import_llama_cpp
    return import_llama_cpp().LlamaGrammar.from_string(label_grammar(labels, sentences), verbose=False)


@functools.lru_cache(maxsize=8)
def compiled_grammar(grammar: str):
    """A GBNF text compiled once (a task's decision-list grammar is asked for every proposal)."""
    from iml_core.llama_build import import_llama_cpp
    return import_llama_cpp().LlamaGrammar.from_string(grammar, verbose=False)


def _formatter(llm, chat_format: str | None):
    from iml_core.llama_build import import_llama_cpp
    llama_chat_format = import_llama_cpp().llama_chat_format

    if chat_format:
        for name in (chat_format.replace("-", "_"), chat_format.replace("-", "")):
            function = getattr(llama_chat_format, f"format_{name}", None)
            if function is not None:
                return lambda messages: function(messages=messages).prompt
        raise UserError(f"unknown chat format {chat_format!r}; try llama-2, llama-3, chatml or mistral-instruct")
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise UserError("this GGUF file has no chat template; pass a chat format (e.g. llama-2) for old files")
    bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "replace") if llm.token_bos() >= 0 else ""
    eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace") if llm.token_eos() >= 0 else ""
    formatter = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    return lambda messages: formatter(messages=messages).prompt


class GrammarBackend:
    """`label` and `text` for a GGUF completed raw, wherever llama.cpp runs: the label forced by a
    grammar, and a revision continuing after the momentum prefix appended to the rendered prompt,
    so the model cannot drop it. A subclass supplies `_grammar` and `_complete`."""

    def _describe(self, name: str, model_path: str, *, n_gpu_layers: int, chat_format: str | None,
                  repeat_penalty: float) -> None:
        """The model file, this machine's build, the response-cache identity and the description."""
        from iml_core.llama_build import require_build
        from iml_core.models import resolve_model

        self.path = check_model_file(resolve_model(model_path))
        self.build = require_build()
        self.compute = compute_of(self.build, n_gpu_layers)
        stat = self.path.stat()
        # The file's size and time stand in for its content: hashing 40 GB per run is too slow.
        # Where the answer was computed (CPU or CUDA, and by which build) is part of it, so one
        # device's answers are not served for another's.
        self.identity = {"backend": name, "model": str(self.path.resolve()), "size": stat.st_size,
                         "mtime": int(stat.st_mtime), "chat_format": chat_format or None, "compute": self.compute,
                         "build": self.build.key}
        self.repeat_penalty = repeat_penalty
        if repeat_penalty != 1.0:  # only then, so that answers cached before penalties existed still count
            self.identity["repeat_penalty"] = repeat_penalty
        # A listed model by its name (an Ollama blob's file name says nothing), a path by its file name.
        shown = self.path.name if Path(model_path).expanduser() == self.path else model_path
        self.description = f"{'llama.cpp' if name == 'llama-cpp' else name}: {shown}"

    def _grammar(self, labels: Sequence[str], sentences: int): ...

    def _complete(self, messages: Messages, *, prefix: str = "", max_tokens: int, temperature: float, seed: int,
                  grammar=None, repeat_penalty: float = 1.0) -> Completion: ...

    def label(self, messages: Messages, labels: Sequence[str], *, temperature: float, seed: int,
              max_tokens: int, sentences: int = 0) -> Completion:
        out = self._complete(messages, max_tokens=max_tokens, temperature=temperature, seed=seed,
                             grammar=self._grammar(labels, sentences))
        label, sentence = split_label_sentence(out.raw, labels, sentences)
        return Completion(out.raw, label, out.tokens_in, out.tokens_out, out.tokens_cached, sentence)

    def _text_grammar(self, grammar: str): ...

    def text(self, messages: Messages, *, temperature: float, seed: int, max_tokens: int,
             prefix: str = "", grammar: str | None = None) -> Completion:
        # The answer is the prefix plus what the model wrote. A space after a prefix that ends
        # inside a line keeps the model from gluing its first word onto the last one kept (a
        # grammar's prefix ends with its line).
        if prefix and not prefix[-1].isspace() and grammar is None:
            prefix += " "
        out = self._complete(messages, prefix=prefix, max_tokens=max_tokens, temperature=temperature, seed=seed,
                             repeat_penalty=self.repeat_penalty,
                             grammar=None if grammar is None else self._text_grammar(grammar))
        return Completion(out.raw, prefix + out.raw, out.tokens_in, out.tokens_out, out.tokens_cached)


class LlamaCppBackend(GrammarBackend):
    max_parallel = 1  # one model, one KV cache: samples go in order so the shared prefix is reused

    def __init__(self, model_path: str, *, n_gpu_layers: int = -1, n_ctx: int = 4096, n_threads: int | None = None,
                 chat_format: str | None = None, repeat_penalty: float = 1.0):
        self._describe("llama-cpp", model_path, n_gpu_layers=n_gpu_layers, chat_format=chat_format,
                       repeat_penalty=repeat_penalty)
        self.settings = {"n_gpu_layers": n_gpu_layers, "n_ctx": n_ctx, "n_threads": n_threads,
                         "chat_format": chat_format or None}
        self._llm, self._lock = self._load()
        # messages -> the prompt text the model sees, by the GGUF's own template (or the override)
        self.render_chat = _formatter(self._llm, chat_format)

    def _load(self):
        """One model per file and settings per process, shared by every run that uses it."""
        key = (str(self.path.resolve()), *self.settings.values())
        with _models_lock:
            if key not in _models:
                from iml_core.llama_build import import_llama_cpp
                Llama = import_llama_cpp().Llama
                try:
                    llm = Llama(model_path=str(self.path), n_gpu_layers=self.settings["n_gpu_layers"],
                                n_ctx=self.settings["n_ctx"], n_threads=self.settings["n_threads"],
                                seed=0, verbose=False)
                except (ValueError, RuntimeError) as e:
                    raise UserError(f"llama.cpp could not load {self.path} ({e}); is it a complete GGUF "
                                    "file of a supported architecture?") from None
                _models[key] = (llm, threading.Lock())
            return _models[key]

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return 0.0  # local compute: no price per token

    def tokens(self, text: str) -> int:
        """How many tokens `text` is for this model (its own tokenizer)."""
        with self._lock:
            return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _grammar(self, labels: Sequence[str], sentences: int):
        return compiled_label_grammar(tuple(labels), sentences)

    def _text_grammar(self, grammar: str):
        return compiled_grammar(grammar)

    def _complete(self, messages: Messages, *, prefix: str = "", max_tokens: int, temperature: float, seed: int,
                  grammar=None, repeat_penalty: float = 1.0) -> Completion:
        prompt = self.render_chat(messages) + prefix
        with self._lock:
            llm = self._llm
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            if len(tokens) + max_tokens > llm.n_ctx():
                raise prompt_too_long(len(tokens), max_tokens, llm.n_ctx())
            previous = list(llm.input_ids[:llm.n_tokens])
            reused = 0
            for a, b in zip(previous, tokens, strict=False):
                if a != b:
                    break
                reused += 1
            result = llm.create_completion(tokens, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                           grammar=grammar, repeat_penalty=repeat_penalty)
        text = result["choices"][0]["text"]
        usage = result["usage"]
        return Completion(text, text, usage["prompt_tokens"], usage["completion_tokens"], min(reused, len(tokens) - 1))

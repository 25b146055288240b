"""The settings of one learning run, their valid ranges and a one-line help for each.

The command line and the dashboard both build their inputs from SETTINGS, so a range or a help
text is written once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from iml_core.backends import BACKENDS
from iml_core.errors import UserError

AGENTS = ("offline", "llm")
FEEDBACK_MODES = ("label", "binary")


STRUCTURED_OUTPUT = ("auto", "json_schema", "json_object", "text")


@dataclass(frozen=True)
class Setting:
    name: str
    low: float
    high: float
    help: str
    llm_only: bool = False


SETTINGS = {
    s.name: s
    for s in (
        Setting("steps", 1, 10_000, "learning steps; each ends with one revision of the notes"),
        Setting("batch_size", 1, 1024, "samples per minibatch (B)"),
        Setting("accumulation", 1, 64, "minibatches inferred and induced before one revision (K)"),
        Setting("momentum", 0.0, 1.0, "share of the old notes' words a revision must keep as its beginning (m)"),
        Setting("seed", 0, 2**31 - 1, "derives the sample order, the eval split and every random choice"),
        Setting("eval_size", 1, 100_000, "held-out samples scored after each evaluated step"),
        Setting("eval_every", 1, 10_000, "evaluate every E steps (and always after the last)"),
        Setting("max_note_words", 5, 20_000, "word cap on the notes; it wins over the momentum prefix"),
        Setting("temperature", 0.0, 2.0, "sampling temperature of the model", True),
        # Penalties act on the written phases (induction, revision) only: in an answer a class name
        # that the notes mention is no repetition to discourage.
        Setting("repeat_penalty", 1.0, 2.0, "llama.cpp: how much the notes' writing avoids repeating recent "
                "tokens; 1 is off, 1.1-1.3 is usual", True),
        Setting("frequency_penalty", -2.0, 2.0, "OpenAI-compatible: penalty per time a token appeared in the "
                "written text; 0 is off", True),
        Setting("presence_penalty", -2.0, 2.0, "OpenAI-compatible: penalty for a token that appeared at all; "
                "0 is off", True),
        Setting("n_gpu_layers", -1, 10_000, "llama.cpp layers on the GPU: -1 all, 0 none (CPU)", True),
        Setting("n_ctx", 256, 1_048_576, "llama.cpp context size in tokens", True),
        Setting("n_threads", 0, 1024, "llama.cpp CPU threads; 0 lets llama.cpp choose (llama-server: every core)",
                True),
        Setting("slots", 0, 64, "llama-server: sequences decoded at once, each with its own n_ctx of KV cache "
                "(memory grows with them); 0 chooses by device (1 on a CPU, 8 on a GPU)", True),
        Setting("max_parallel", 1, 256, "requests sent at once in the inference phase (OpenAI-compatible)", True),
        Setting("timeout", 1.0, 3600.0, "seconds to wait for one answer before retrying", True),
        Setting("max_retries", 0, 20, "retries with backoff after a 429, a 5xx or a timeout", True),
        Setting("price_in", 0.0, 1000.0, "price per million input tokens, for the cost column", True),
        Setting("price_out", 0.0, 1000.0, "price per million output tokens, for the cost column", True),
    )
}


@dataclass(frozen=True)
class RunConfig:
    task: str = "paper"
    agent: str = "offline"
    steps: int = 30
    batch_size: int = 16
    accumulation: int = 1
    momentum: float = 0.5
    seed: int = 0
    eval_size: int = 200
    eval_every: int = 1
    max_note_words: int = 300
    feedback: str = "label"
    label_column: str = "label"
    label_noise: float | None = None  # None: the preset's own
    initial_notes: str = ""
    # The LLM agent's model. No key here: keys come from the environment and are never stored.
    backend: str = ""
    model: str = ""  # a GGUF path (or listed name) for llama-server and llama-cpp, a model name for openai
    base_url: str = ""  # openai only; empty means OpenAI itself
    chat_format: str = ""  # a model here only; empty means the template inside the GGUF
    structured_output: str = "auto"
    temperature: float = 0.2
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    n_gpu_layers: int = -1
    n_ctx: int = 4096
    n_threads: int = 0
    slots: int = 0
    max_parallel: int = 8
    timeout: float = 60.0
    max_retries: int = 3
    price_in: float = 0.0
    price_out: float = 0.0
    cache: bool = True  # answer repeated calls from the response cache

    def problems(self) -> list[str]:
        """Every invalid setting, each as a sentence naming the setting, its range and the value given."""
        found = []
        for name, setting in SETTINGS.items():
            value = getattr(self, name)
            is_integer_setting = isinstance(setting.low, int)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    is_integer_setting and not isinstance(value, int)):
                kind = "a whole number" if is_integer_setting else "a number"
                found.append(f"{name} must be {kind}, got {value!r}")
            elif isinstance(value, float) and not math.isfinite(value):
                found.append(f"{name} must be a finite number, got {value!r}")
            elif not setting.low <= value <= setting.high:
                found.append(f"{name} must be between {setting.low} and {setting.high}, got {value!r}")
        if self.agent not in AGENTS:
            found.append(f"agent must be one of {', '.join(AGENTS)}, got {self.agent!r}")
        if self.feedback not in FEEDBACK_MODES:
            found.append(f"feedback must be one of {', '.join(FEEDBACK_MODES)}, got {self.feedback!r}")
        if self.label_noise is not None and not (
                isinstance(self.label_noise, (int, float)) and 0 <= self.label_noise < 1):
            found.append(f"label_noise must be at least 0 and below 1, got {self.label_noise!r}")
        if self.agent == "llm":
            if self.backend not in BACKENDS:
                found.append(f"an LLM run needs a backend: {' or '.join(BACKENDS)}, got {self.backend!r}")
            if not self.model.strip():
                found.append("an LLM run needs a model: a .gguf path or a listed name for a model here, "
                             "a model name for openai")
        if self.structured_output not in STRUCTURED_OUTPUT:
            found.append(f"structured_output must be one of {', '.join(STRUCTURED_OUTPUT)}, "
                         f"got {self.structured_output!r}")
        if not self.task or not str(self.task).strip():
            found.append("task is empty; give a preset name or the path of a CSV file")
        return found

    def check(self) -> "RunConfig":
        found = self.problems()
        if found:
            raise UserError("; ".join(found))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown run setting(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

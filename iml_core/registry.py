"""Every agent and every model backend by name: the one place the rest of the engine, the command
line and the dashboard learn what exists.

Adding a backend is one new module under iml_core/backends/ and one row in BACKENDS; adding an
agent, one module under iml_core/agents/ and one row in AGENTS; adding a learner, one module
under iml_core/learners/ and one row in LEARNERS. The settings' choices, the CLI's
flags, the Models page's form and the default for a --model all read these rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from iml_core.agents import Agent
from iml_core.backends import OPENAI_URL, Backend

# A build function receives the run's settings (an iml_core.config.RunConfig; typed Any here so the
# registry sits below the settings that read its names).
RunSettings = Any


# --- backends -------------------------------------------------------------------------------------

def _llama_server(config: RunSettings, on_retry=None) -> Backend:  # a local server is not retried
    from iml_core.backends.llama_server import LlamaServerBackend
    return LlamaServerBackend(config.model, n_gpu_layers=config.n_gpu_layers, n_ctx=config.n_ctx,
                              n_threads=config.n_threads or None, chat_format=config.chat_format or None,
                              repeat_penalty=config.repeat_penalty, slots=config.slots)


def _llama_cpp(config: RunSettings, on_retry=None) -> Backend:
    from iml_core.backends.llama_cpp import LlamaCppBackend
    return LlamaCppBackend(config.model, n_gpu_layers=config.n_gpu_layers, n_ctx=config.n_ctx,
                           n_threads=config.n_threads or None, chat_format=config.chat_format or None,
                           repeat_penalty=config.repeat_penalty)


def _openai(config: RunSettings, on_retry=None) -> Backend:
    from iml_core.backends.openai_compat import OpenAICompatBackend
    return OpenAICompatBackend(config.model, base_url=config.base_url, api_key=os.environ.get("OPENAI_API_KEY"),
                               timeout=config.timeout, max_retries=config.max_retries,
                               max_parallel=config.max_parallel, structured_output=config.structured_output,
                               price_in=config.price_in, price_out=config.price_out,
                               frequency_penalty=config.frequency_penalty, presence_penalty=config.presence_penalty,
                               on_retry=on_retry)


def _check_model_here(config: RunSettings) -> None:
    """A GGUF run's settings, checked without running it: the file (a listed name or a path), its
    header (a truncated or corrupt file), and llama.cpp built here. Starts no server, loads nothing."""
    from iml_core.backends.llama_cpp import check_model_file
    from iml_core.gguf_header import read_gguf_header
    from iml_core.llama_build import require_build
    from iml_core.models import resolve_model

    read_gguf_header(check_model_file(resolve_model(config.model)))
    require_build(build_if_missing=False)


def _check_server_settings(config: RunSettings) -> None:
    """A remote run's settings: a base URL that is a URL. Reaching the server is a network round trip,
    too slow for a check on every page rerun; the Models page's Test and a run's first call ask it."""
    from iml_core.backends.openai_compat import check_base_url
    check_base_url(config.base_url)


def _model_file_here(model: str, base_url: str) -> bool:
    """A GGUF here: a listed name, or anything that reads as a file path (so that a wrong path is
    told it is missing, not sent to a server)."""
    from iml_core.models import is_local_model
    return not base_url and bool(model) and (os.sep in model or model.lower().endswith(".gguf")
                                             or is_local_model(model))


def _models_here(base_url: str) -> list[str]:
    from iml_core.models import find_models
    return [m.name for m in find_models() if m.usable]


def _server_models(base_url: str) -> list[str]:
    from iml_core.models import server_models
    return server_models(base_url, api_key=os.environ.get("OPENAI_API_KEY"))


@dataclass(frozen=True)
class BackendKind:
    name: str
    where: str  # where the model runs, in a user's words
    settings: tuple[str, ...]  # the run settings it reads besides the model and the temperature: its form
    sampling: tuple[str, ...]  # those of them that shape what the model writes (New run shows them)
    # (settings, on_retry) -> the backend; on_retry(notice) hears why a call is being retried
    build: Callable[[RunSettings, Callable[[str | None], None] | None], Backend]
    # Where the model's process is: "managed" (a server this engine starts on this machine), "in
    # process" (this one), or "remote" (a server at base_url that someone else runs).
    process: str
    # The default rule: whether a --model (and --base-url) given without --backend means this
    # backend. Rows are asked in order; the first that claims the model wins.
    claims: Callable[[str, str], bool]
    # The models it can run now, by the names a run's `model` takes (may ask a server: RunFailed).
    list_models: Callable[[str], list[str]]
    # What can be told of a run's settings without building the backend (UserError naming the first
    # problem): no server started, no weights loaded, nothing sent. Pages call it on every rerun.
    check: Callable[[RunSettings], None] = lambda config: None

    @property
    def runs_here(self) -> bool:
        """Whether the model runs on this machine (a GGUF file, which llama.cpp must be built for)."""
        return self.process != "remote"

    def endpoint(self, config: RunSettings) -> str | None:
        """The model server a run calls (for the per-server cap); None for a model run in this process.
        A managed llama-server is named by its model: the runs of one model share one server."""
        if self.process == "remote":
            return config.base_url or OPENAI_URL
        return f"{self.name} {config.model}" if self.process == "managed" else None


BACKENDS = {kind.name: kind for kind in (
    BackendKind("llama-server", "On this machine: a GGUF file run by llama.cpp in a server of its own "
                                "(a crash there stops one run, not the app)",
                ("n_gpu_layers", "n_ctx", "n_threads", "chat_format", "repeat_penalty", "slots"), ("repeat_penalty",),
                _llama_server, "managed", _model_file_here, _models_here, _check_model_here),
    BackendKind("llama-cpp", "On this machine: a GGUF file run by llama.cpp inside this process",
                ("n_gpu_layers", "n_ctx", "n_threads", "chat_format", "repeat_penalty"), ("repeat_penalty",),
                _llama_cpp, "in process", lambda model, base_url: False, _models_here, _check_model_here),
    BackendKind("openai", "On a server: OpenAI, or any OpenAI-compatible one (vLLM, Ollama, LM Studio, "
                          "llama.cpp server)",
                ("base_url", "max_parallel", "timeout", "max_retries", "structured_output", "price_in", "price_out",
                 "frequency_penalty", "presence_penalty"), ("frequency_penalty", "presence_penalty"), _openai,
                "remote", lambda model, base_url: True, _server_models, _check_server_settings),
)}


def default_backend(model: str, base_url: str = "") -> str:
    """The backend a --model means when none is named: the first row that claims it."""
    return next(name for name, kind in BACKENDS.items() if kind.claims(model, base_url or ""))


# --- agents ---------------------------------------------------------------------------------------

def _offline(config: RunSettings, task, cache, on_retry) -> Agent:
    from iml_core.agents.offline import OfflineRuleLearner
    return OfflineRuleLearner(task.attributes, task.classes, notes_form=config.notes_form)


def _llm(config: RunSettings, task, cache, on_retry) -> Agent:
    from iml_core.agents.llm import LLMAgent
    return LLMAgent(task, BACKENDS[config.backend].build(config, on_retry), temperature=config.temperature,
                    cache=cache, layout=config.prompt_layout, notes_form=config.notes_form,
                    rule_reading=config.rule_reading)


@dataclass(frozen=True)
class AgentKind:
    name: str
    label: str  # how the dashboard names it
    build: Callable[[RunSettings, Any, Any, Any], Agent]  # (settings, task, response cache, on_retry) -> the agent
    # Whether it calls a model: then a run needs a backend and a model, keeps its prompts, counts
    # tokens and calls a server the per-server cap counts.
    uses_model: bool
    rule_card_notes: Callable[[Any], str]  # a benchmark's rule card written as notes this agent reads


def _offline_rule_card(task) -> str:
    from iml_core.agents.offline import rule_card_notes
    return rule_card_notes(task)


def _llm_rule_card(task) -> str:
    from iml_core.agents.llm import rule_card_notes
    return rule_card_notes(task)


AGENTS = {kind.name: kind for kind in (
    AgentKind("offline", "Offline rule learner (no LLM)", _offline, uses_model=False,
              rule_card_notes=_offline_rule_card),
    AgentKind("llm", "LLM (the model chosen on the Models page)", _llm, uses_model=True,
              rule_card_notes=_llm_rule_card),
)}


def model_agent() -> str:
    """The agent a model is for: a --model given without --agent, or the model a page tests."""
    return next(name for name, kind in AGENTS.items() if kind.uses_model)


# --- learners -------------------------------------------------------------------------------------

def _iml(config: RunSettings, state: str | None):
    from iml_core.learners.iml import IMLLearner
    return IMLLearner()


def _bank(config: RunSettings, state: str | None):
    from iml_core.learners.bank import BankLearner
    return BankLearner(config, state)


def _gated(config: RunSettings, state: str | None):
    from iml_core.learners.gated import GatedLearner
    return GatedLearner()


def _playbook(config: RunSettings, state: str | None):
    from iml_core.learners.playbook import PlaybookLearner
    return PlaybookLearner(config, state)


def _phase(name: str):
    from iml_core.agents import PhaseName
    return PhaseName(name)


EDITS = 3  # the bank's edit: variants of a rule it expects to score, one per feature the rule names


@dataclass(frozen=True)
class LearnerKind:
    name: str
    label: str  # how the dashboard names it
    # (settings, the state the last committed step left, or None) -> the learner (iml_core.learners)
    build: Callable[[RunSettings, str | None], Any]
    settings: tuple[str, ...]  # the run settings it reads besides the loop's: its fields on New run
    # (settings, the task's attributes, the labelled samples seen before the step) -> the model calls
    # one step asks besides its inference answers, by phase (iml_core.agents.PhaseName values), as
    # many as it will make, not a bound: for the Live page's time left and the estimates before a run
    step_calls: Callable[[RunSettings, int, int], dict[str, float]]
    needs_labels: bool  # it reads the right class of each sample: only under label feedback
    own_prompts: bool = False  # it asks prompts of iml_core.prompts.LEARNER_PROMPTS, stored with its runs

    def calls(self, config: RunSettings, attributes: int, seen: int) -> dict:
        return {_phase(name): n for name, n in self.step_calls(config, attributes, seen).items()}


def step_calls(config: RunSettings, attributes: int, step: int) -> dict:
    """The model calls learning step `step` (from 1) makes, by phase: its K*B answers unless the
    engine applies the notes, and its learner's (LearnerKind.step_calls)."""
    seen = step * config.accumulation * config.batch_size  # the labelled samples a bank's window can hold
    return {_phase("infer"): 0 if config.apply == "rule" else config.accumulation * config.batch_size,
            **LEARNERS[config.learner].calls(config, attributes, seen)}


LEARNERS = {kind.name: kind for kind in (
    LearnerKind("iml", "IML: induce per minibatch, revise the notes with momentum (the paper's)", _iml,
                ("momentum",), lambda c, attributes, seen: {"induce": c.accumulation, "revise": 1},
                needs_labels=False),
    # In rule form the bank asks a yes/no question per attribute and minibatch, then one refinement,
    # and the engine scores; in words every candidate is read by the model on the samples in its window.
    LearnerKind("bank", "Hypothesis bank: candidate rules scored by applying them, the best kept (after HypoGeniC)",
                _bank, ("proposals", "proposal_style", "edit", "score_window", "bank_size", "margin"),
                lambda c, attributes, seen: {"induce": c.accumulation * attributes + 1, "score": 0}
                if c.notes_form == "rule" else
                {"induce": c.accumulation + c.edit,
                 "score": (c.accumulation * c.proposals + c.bank_size + c.edit * EDITS) * min(c.score_window, seen)},
                needs_labels=True, own_prompts=True),
    LearnerKind("gated", "Score-gated IML: a revision replaces the notes only if it scores as well (after GEPA)",
                _gated, ("momentum",), lambda c, attributes, seen: {
                    "induce": c.accumulation, "revise": 1,
                    "score": 0 if c.notes_form == "rule" else c.accumulation * c.batch_size}, needs_labels=False),
    LearnerKind("playbook", "Delta playbook: bullets added, edited and removed, the harmful ones dropped (after ACE)",
                _playbook, (), lambda c, attributes, seen: {"induce": c.accumulation}, needs_labels=False,
                own_prompts=True),
)}

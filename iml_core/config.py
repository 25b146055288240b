"""The settings of one learning run and of a submission of runs: for each, its kind, valid range
or choices, default and a one-line help, written here once.

The command line's flags, the sweep's and scorer's fields, the dashboard's widgets and RunConfig's
checks are all made from SETTINGS (tests/test_settings.py holds them to it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from iml_core.budget import SWEEP, Limits
from iml_core.catalogue import catalogue_row_of
from iml_core.errors import UserError
from iml_core.prompts import DEFAULT_LAYOUT, PROMPT_LAYOUTS
from iml_core.learners import PROPOSAL_STYLES
from iml_core.registry import AGENTS, BACKENDS, LEARNERS

FEEDBACK_MODES = {"label": "the environment names the right class",
                  "binary": "the environment says only right or wrong"}
STRUCTURED_OUTPUT = {"auto": "the best the server accepts: json_schema, else json_object",
                     "json_schema": "a JSON schema with the classes as an enum",
                     "json_object": "any JSON object, the label checked afterwards",
                     "text": "plain text, the label read from it"}
# Notes a program can apply (iml_core.decision_list, issue 35): what the notes are, and who applies them.
NOTES_FORMS = {"text": "notes in words, as the paper's",
               "rule": "a decision list (IF attribute = value ... THEN class, ELSE class) under the task's grammar"}
APPLIERS = {"model": "the model reads the notes and answers (the paper's protocol)",
            "rule": "the engine runs the notes' decision list: no model call"}
# How the model reads a decision list when it applies one (apply model, and the model-applied figure
# beside apply rule): the sample in the task's words, or in the list's, or the list a line at a time.
RULE_READINGS = {"prose": "the sample as the task describes it, the whole list in the prompt (the paper's)",
                 "aligned": "the sample written as attribute = value, the list's own words",
                 "stepwise": "one yes/no question per line (does the sample meet its conditions?); the first yes "
                             "names the class, the ELSE line when none does"}
KINDS = ("integer", "number", "text", "choice", "flag")


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # one of KINDS
    label: str  # how a page names it
    help: str
    low: float | None = None  # integer and number: the valid range, both ends included
    high: float | None = None
    # choice: the valid values; a registry's dict is read when asked, so a row added later counts
    choices: Mapping | None = None
    step: float | None = None  # how far a widget's arrows move it
    optional: bool = False  # None is valid and means "not set" (e.g. the preset's own label noise)
    # "run": how a run learns; "model": the LLM agent's; "budget": what it may spend; "submission": how
    # runs are queued
    part: str = "run"
    axis: bool = True  # a sweep may vary it
    scorer: bool = False  # `evaluate` may change it to score notes with another agent, model or task
    # How a run learns, not what it is scored on: a run's baselines do not depend on it
    # (iml_core.evaluation.baseline_key).
    learning: bool = False
    column: bool = False  # a column of the runs table (Store.runs_frame), to sort and group runs by

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def values(self) -> tuple:
        return tuple(self.choices or ())

    def describe(self, value) -> str:
        """A choice in words, for a selectbox: its registry row's own words or its description."""
        described = (self.choices or {}).get(value, value)
        return str(getattr(described, "label", None) or getattr(described, "where", None) or described)

    def range_text(self) -> str:
        if self.kind in ("integer", "number"):
            return f"{self.low} to {self.high}"
        return ", ".join(self.values) if self.kind == "choice" else ""

    def problem(self, value) -> str | None:
        """What is wrong with `value` for this setting, as a sentence naming it by its label (as pages
        show it; the command line puts the flag before it); None when it is valid."""
        if value is None and self.optional:
            return None
        if self.kind in ("integer", "number"):
            integer = self.kind == "integer"
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
                return f"{self.label} must be {'a whole number' if integer else 'a number'}, got {value!r}"
            if isinstance(value, float) and not math.isfinite(value):
                return f"{self.label} must be a finite number, got {value!r}"
            if not self.low <= value <= self.high:
                return f"{self.label} must be between {self.low} and {self.high}, got {value!r}"
        elif self.kind == "choice" and value not in self.values:
            return f"{self.label} must be one of {', '.join(self.values)}, got {value!r}"
        elif self.kind == "text" and not isinstance(value, str):
            return f"{self.label} must be text, got {value!r}"
        elif self.kind == "flag" and not isinstance(value, bool):
            return f"{self.label} must be true or false, got {value!r}"
        return None


def _integer(name, label, low, high, help, **more) -> Setting:
    return Setting(name, "integer", label, help, low, high, **more)


def _number(name, label, low, high, help, **more) -> Setting:
    return Setting(name, "number", label, help, low, high, **more)


# Budgets (iml_core.budget): what a run may spend before it stops as `budget reached`. Not how
# it learns nor what it is scored on, so neither a sweep axis nor a part of its baselines' key.
_BUDGETS = (
    _number(Limits.setting("cost"), "Cost limit", 0.0, 1e9, "stop before the model call that would pass this "
            "cost (in the price units above; empty: no limit)", part="budget", axis=False, optional=True),
    _integer(Limits.setting("tokens"), "Token limit", 1, 10**12, "stop before the model call that would pass "
             "this many tokens in and out (empty: no limit)", part="budget", axis=False, optional=True, step=1000),
    _integer(Limits.setting("calls"), "Model call limit", 1, 10**9, "stop before the model call past this many "
             "(empty: no limit)", part="budget", axis=False, optional=True, step=10),
    _number(Limits.setting("minutes"), "Minute limit", 0.01, 1e6, "stop at the first model call or step after "
            "this many minutes of running (empty: no limit)", part="budget", axis=False, optional=True, step=1.0),
)


SETTINGS = {s.name: s for s in (
    Setting("task", "text", "Task", "a preset (paper, noisy, hard), a generated task "
            "(rules:classes=3,attributes=6,relevant=2,...; its knobs on the Data page) or the path of a CSV file",
            scorer=True),
    Setting("label_column", "text", "Label column", "the CSV column that holds the classes"),
    _number("label_noise", "Label noise", 0.0, 0.95, "share of a preset's labels replaced by a wrong class "
            "(empty: the preset's own); a generated task's noise knob, when its spec sets none", step=0.05,
            optional=True),
    Setting("agent", "choice", "Agent", "offline: the rule learner (no LLM); llm: a language model",
            choices=AGENTS, scorer=True),
    Setting("feedback", "choice", "Feedback", "label: the environment names the right class; binary: only right "
            "or wrong", choices=FEEDBACK_MODES, learning=True, column=True),
    Setting("learner", "choice", "Learner", "how a step turns experience into notes: iml (the paper's induce and "
            "revise), bank (candidate rules scored by applying them), gated (IML, a revision kept only if it scores "
            "as well), playbook (bullets edited by operations, harmful ones dropped)", choices=LEARNERS,
            learning=True, column=True),
    Setting("notes_form", "choice", "Notes form", "text: notes in words (the paper's); rule: a decision list "
            "(IF attribute = value [AND ...] THEN class, ELSE class) that every learner writes under the task's "
            "grammar and the engine can run", choices=NOTES_FORMS, learning=True, column=True, scorer=True),
    Setting("apply", "choice", "Applied by", "who applies the notes in inference and evaluation: model (the paper's "
            "protocol) or rule (the engine runs the decision list, no model call; needs notes form rule). Rule "
            "notes are scored both ways at every evaluated step", choices=APPLIERS, learning=True, column=True,
            scorer=True),
    # Not `learning`: the oracle is a decision list read the same way, so runs differing in it do not
    # share their baselines.
    Setting("rule_reading", "choice", "Rule reading", "how the model reads a decision list when it applies one: "
            "prose (the sample in the task's words), aligned (the sample as attribute = value) or stepwise (a "
            "yes/no question per line, up to one call per line and sample); needs notes form rule",
            choices=RULE_READINGS, part="model", scorer=True),
    _integer("proposals", "Proposals per minibatch", 1, 16, "bank: candidate rules the model proposes from each "
             "minibatch", learning=True),
    Setting("proposal_style", "choice", "Proposal style", "bank: free (rules as the model writes them) or "
            "one-feature (each rule names one feature only)", choices=PROPOSAL_STYLES, learning=True),
    Setting("edit", "flag", "Edit the best rule", "bank: also score the best new rule once with each feature it "
            "names alone, the others dropped (a rule often joins the deciding feature with a spurious one)",
            learning=True, axis=False),
    _integer("score_window", "Score window", 1, 4096, "bank: the last N labelled training samples each rule is "
             "scored on, by applying it", step=8, learning=True),
    _integer("bank_size", "Bank size", 1, 64, "bank: the rules kept between steps; the notes are the best",
             learning=True),
    _number("margin", "Replacement margin", 0.0, 1.0, "bank: a rule that is the notes is replaced only by one "
            "scoring more than this share of the window better (the bank's momentum)", step=0.01, learning=True),
    _integer("steps", "Steps", 1, 10_000, "learning steps; each ends with one revision of the notes", learning=True),
    _integer("batch_size", "Batch size", 1, 1024, "samples per minibatch (B)", learning=True, column=True),
    _integer("accumulation", "Accumulation", 1, 64, "minibatches inferred and induced before one revision (K)",
             learning=True, column=True),
    _number("momentum", "Momentum", 0.0, 1.0, "share of the old notes' words a revision must keep as its "
            "beginning (m)", step=0.05, learning=True, column=True),
    _integer("seed", "Seed", 0, 2**31 - 1, "derives the sample order, the eval split and every random choice",
             scorer=True, column=True),
    _integer("eval_size", "Eval size", 1, 100_000, "held-out samples scored after each evaluated step", step=10,
             scorer=True),
    _integer("eval_every", "Eval every", 1, 10_000, "evaluate every E steps (and always after the last)",
             learning=True),
    _integer("max_note_words", "Max note words", 5, 20_000, "word cap on the notes; it wins over the momentum "
             "prefix", step=10, column=True),
    Setting("initial_notes", "text", "Initial notes", "the notes a run starts from (a fork's parent's)",
            axis=False, learning=True),
    Setting("backend", "choice", "Backend", "where the model runs (default: llama-server for a GGUF here, else "
            "openai)", choices=BACKENDS, part="model", scorer=True),
    Setting("model", "text", "Model", "a model here: a .gguf path or a name `iml models` lists (e.g. starter); "
            "openai: the server's model name", part="model", scorer=True),
    Setting("base_url", "text", "Server address (base URL)", "the server's /v1 URL (openai; empty: OpenAI)",
            part="model", scorer=True),
    Setting("chat_format", "text", "Chat format", "a model here: override the GGUF's chat template for old files "
            "(e.g. llama-2); empty: the template inside the GGUF", part="model", scorer=True),
    Setting("structured_output", "choice", "Structured output", "how labels are forced on an OpenAI-compatible "
            "server", choices=STRUCTURED_OUTPUT, part="model", scorer=True),
    _number("temperature", "Temperature", 0.0, 2.0, "sampling temperature of the model", step=0.05, part="model",
            scorer=True),
    # Not `learning`: the oracle and in-context baselines are asked in the run's layout, and the
    # layout alone can move them from below chance to 100%, so runs differing in it do not share them.
    Setting("prompt_layout", "choice", "Prompt layout", "where the inference prompt puts the notes (system or user "
            "turn, before the sample) and whether the answer names the line it relied on (plain: it does not)",
            choices=PROMPT_LAYOUTS, part="model", scorer=True, column=True),
    # Penalties act on the written phases (induction, revision) only: in an answer a class name
    # that the notes mention is no repetition to discourage.
    _number("repeat_penalty", "Repeat penalty", 1.0, 2.0, "llama.cpp: how much the notes' writing avoids "
            "repeating recent tokens; 1 is off, 1.1-1.3 is usual", step=0.05, part="model"),
    _number("frequency_penalty", "Frequency penalty", -2.0, 2.0, "OpenAI-compatible: penalty per time a token "
            "appeared in the written text; 0 is off", step=0.05, part="model"),
    _number("presence_penalty", "Presence penalty", -2.0, 2.0, "OpenAI-compatible: penalty for a token that "
            "appeared at all; 0 is off", step=0.05, part="model"),
    _integer("n_gpu_layers", "Layers on the GPU", -1, 10_000, "llama.cpp layers on the GPU: -1 all, 0 none (CPU)",
             part="model", scorer=True),
    _integer("n_ctx", "Context length (tokens)", 256, 1_048_576, "llama.cpp context size in tokens", step=256,
             part="model", scorer=True),
    _integer("n_threads", "CPU threads", 0, 1024, "llama.cpp CPU threads; 0 lets llama.cpp choose (llama-server: "
             "every core)", part="model", scorer=True),
    _integer("slots", "Sequences at once", 0, 64, "llama-server: sequences decoded at once, each with its own "
             "context length of KV cache (memory grows with them); 0 chooses by device (1 on a CPU, 8 on a GPU)",
             part="model", scorer=True),
    _integer("max_parallel", "Requests at once", 1, 256, "requests sent at once in the inference phase "
             "(OpenAI-compatible)", part="model"),
    _number("timeout", "Timeout (s)", 1.0, 3600.0, "seconds to wait for one answer before retrying", part="model"),
    _integer("max_retries", "Retries", 0, 20, "retries with backoff after a 429, a 5xx or a timeout", part="model"),
    _number("price_in", "Price per million input tokens", 0.0, 1000.0, "price per million input tokens, for the "
            "cost column", part="model"),
    _number("price_out", "Price per million output tokens", 0.0, 1000.0, "price per million output tokens, for "
            "the cost column", part="model"),
    *_BUDGETS,
    Setting("cache", "flag", "Answer repeated calls from the response cache", "a repeated identical call costs "
            "nothing; off measures the model afresh", part="model", axis=False),
    # Up to a large Ray cluster's CPUs: a sweep there defaults to its capacity.
    _integer("parallel", "Runs at once", 1, 4096, "runs of one submission going at once; the others wait queued",
             part="submission", axis=False),
    _integer("max_per_endpoint", "At most at once per model server", 1, 4096, "runs of one submission calling the "
             "same model server at once, so a sweep cannot flood it (empty: no cap)", part="submission",
             axis=False, optional=True),
    # A sweep's budget (iml_core.budget): the same limits, for all the runs of one submission together.
    *(dataclasses.replace(limit, name=SWEEP + limit.name, label=f"Sweep {limit.label.lower()}",
                          help=f"for all the runs of this sweep together: {limit.help}", part="submission")
      for limit in _BUDGETS),
)}
RUN_SETTINGS = {name: s for name, s in SETTINGS.items() if s.part != "submission"}
# A run's own limits, and a sweep's for its runs together (iml_core.budget).
BUDGET_SETTINGS = [limit.name for limit in _BUDGETS]
SWEEP_BUDGET_SETTINGS = [SWEEP + limit.name for limit in _BUDGETS]


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
    learner: str = "iml"  # the paper's, the learner of every run before learners were a choice
    notes_form: str = "text"
    apply: str = "model"
    rule_reading: str = "prose"
    proposals: int = 4
    proposal_style: str = "one-feature"
    edit: bool = False
    score_window: int = 32
    bank_size: int = 3
    margin: float = 0.05
    # The LLM agent's model. No key here: keys come from the environment and are never stored.
    backend: str = ""
    model: str = ""  # a GGUF path (or listed name) for llama-server and llama-cpp, a model name for openai
    base_url: str = ""  # openai only; empty means OpenAI itself
    chat_format: str = ""  # a model here only; empty means the template inside the GGUF
    structured_output: str = "auto"
    temperature: float = 0.2
    prompt_layout: str = DEFAULT_LAYOUT  # the layout of every run before layouts existed
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
    cache: bool = True
    max_cost: float | None = None
    max_tokens: int | None = None
    max_calls: int | None = None
    max_minutes: float | None = None

    @property
    def uses_model(self) -> bool:
        return AGENTS[self.agent].uses_model

    def problems(self) -> list[str]:
        """Every invalid setting, each as a sentence naming the setting, its range and the value given."""
        found = [problem for name, setting in RUN_SETTINGS.items()
                 if name != "backend" and (problem := setting.problem(getattr(self, name))) is not None]
        if self.agent in AGENTS and self.uses_model:  # the rule learner reads no backend and no model
            if self.backend not in BACKENDS:
                found.append(f"an LLM run needs a backend: {' or '.join(BACKENDS)}, got {self.backend!r}")
            if not self.model.strip():
                found.append("an LLM run needs a model: a .gguf path or a listed name for a model here, "
                             "a model name for openai")
        if self.learner in LEARNERS and LEARNERS[self.learner].needs_labels and self.feedback != "label":
            found.append(f"the {self.learner} learner reads the right class of each sample: it needs feedback "
                         f"label, got {self.feedback!r}; choose another learner or --feedback label")
        if self.notes_form == "rule" and self.learner == "playbook":
            found.append("the playbook learner edits numbered bullets, which a decision list has not: with notes "
                         "form rule choose the iml, bank or gated learner")
        if self.apply == "rule" and self.notes_form != "rule":
            found.append("Applied by rule runs the notes as a decision list, which needs notes form rule: set notes "
                         "form to rule (--notes-form rule), or apply by model")
        if self.rule_reading != RUN_DEFAULTS.rule_reading and self.notes_form != "rule":
            found.append(f"Rule reading {self.rule_reading} reads a decision list, which needs notes form rule: set "
                         "notes form to rule (--notes-form rule), or leave rule reading at prose")
        if not str(self.task).strip():
            found.append("task is empty; give a preset name, a generated task (rules:...) or the path of a CSV file")
        return found

    def check(self) -> "RunConfig":
        found = self.problems()
        if found:
            raise UserError("; ".join(found))
        return self

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        # A run in words, applied by the model, stores the settings it stored before these existed, so
        # that its stored config, like everything else it stores, is what it always was.
        for name in UNSTORED_AT_DEFAULT:
            if data[name] == getattr(RUN_DEFAULTS, name):
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown run setting(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


RUN_DEFAULTS = RunConfig()
UNSTORED_AT_DEFAULT = ("notes_form", "apply", "rule_reading")


@dataclass(frozen=True)
class Submission:
    """How the runs of one submission (a run, a sweep, a study) are queued; each brings its own, so
    one tab never changes another's."""
    parallel: int = 2
    max_per_endpoint: int | None = None
    sweep_max_cost: float | None = None
    sweep_max_tokens: int | None = None
    sweep_max_calls: int | None = None
    sweep_max_minutes: float | None = None

    def check(self) -> "Submission":
        found = [p for name, setting in SETTINGS.items() if setting.part == "submission"
                 if (p := setting.problem(getattr(self, name))) is not None]
        if found:
            raise UserError("; ".join(found))
        return self


DEFAULT_SUBMISSION = Submission()


@dataclass(frozen=True)
class Recommendation:
    """The run settings measured to learn with a model (its catalogue row's `recommended`): New run
    starts from them when the model is chosen, and the README quotes them as `flags`."""
    model: str
    settings: dict
    measured: str

    @property
    def flags(self) -> str:
        return " ".join(SETTINGS[name].flag if SETTINGS[name].kind == "flag" else f"{SETTINGS[name].flag} {value}"
                        for name, value in self.settings.items() if SETTINGS[name].kind != "flag" or value)


def recommended(model: str) -> Recommendation | None:
    """What the catalogue recommends for `model` (a name or an installed file's path); None for a
    model it does not list or has measured nothing for."""
    row = catalogue_row_of(model) if model else None
    if row is None or not row.recommended:
        return None
    settings = dict(row.recommended["settings"])
    wrong = sorted(set(settings) - set(SETTINGS)) or RunConfig(agent="llm", backend="llama-server", model=model,
                                                                **settings).problems()
    if wrong:
        raise UserError(f"the catalogue's recommended settings for {row.name} are not valid ({'; '.join(wrong)}); "
                        "fix the row's recommended settings")
    return Recommendation(row.name, settings, str(row.recommended["measured"]))

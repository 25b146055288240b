"""The LLM agent: the three IML phases as prompts (iml_core.prompts) over any backend.

Every call goes through `_call`, which consults the response cache, times the call, and logs it
for the step's record. Output that cannot be used is kept raw in the log and handled by a rule:
- inference: an answer that is not one of the classes counts as invalid (and wrong);
- induction: an empty summary becomes the batch note "(empty)";
- revision: an empty rewrite keeps the old notes; one over the word cap is cut by the loop.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, Sequence

from iml_core.agents import ModelCall, Phase, PhaseName, Prediction, Trajectory
from iml_core.attribution import note_units, numbered
from iml_core.backends import LINE_SEPARATOR, Backend, Completion
from iml_core.agents.llm_rules import RuleWriter
from iml_core.decision_list import RuleError, RuleForm
from iml_core.errors import IMLError, UserError
from iml_core.prompts import DEFAULT_LAYOUT, PROMPT_LAYOUTS, PROMPTS, fill
from iml_core.tasks import Observation, Task, rule_sentence

LABEL_TOKENS = 24  # a class name, then " | line N"
INDUCE_TOKENS = 256
PROPOSAL_TOKENS = 64  # per candidate rule asked of `propose`
EDITS = 3  # the most rewrites of one rule `simplify` reads: one per feature it names
CHARACTERS_PER_TOKEN = 4  # English text, about, where no tokenizer is at hand
TOKENS_PER_WORD = 2  # room for the revised notes: a word is about 1.3 tokens in English; a margin


class ResponseCache(Protocol):
    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, value: dict) -> None: ...


class LLMAgent(RuleWriter):
    def __init__(self, task: Task, backend: Backend, *, temperature: float = 0.2, cache: ResponseCache | None = None,
                 layout: str = DEFAULT_LAYOUT, notes_form: str = "text", rule_reading: str = "prose"):
        if layout not in PROMPT_LAYOUTS:
            raise UserError(f"unknown prompt layout {layout!r}; choose one of {', '.join(PROMPT_LAYOUTS)}")
        self.task, self.backend, self.temperature, self.cache = task, backend, temperature, cache
        self.layout = PROMPT_LAYOUTS[layout]
        # Named only when not the default, so that the descriptions of earlier runs stay theirs, and
        # evaluations of one run under several layouts (`baseline --prompt-layout`) are told apart.
        self.description = backend.description + ("" if layout == DEFAULT_LAYOUT else f" (prompt layout {layout})") + (
            "" if rule_reading == "prose" else f" (rule reading {rule_reading})")
        self.rule_reading = rule_reading
        self._shared = {"noun": task.noun, "classes": ", ".join(task.classes)}
        self._calls: list[ModelCall] = []
        self._calls_lock = threading.Lock()
        # Rule notes: every note this agent writes is a decision list over the task, under its grammar.
        self.rules = RuleForm(task.attributes, task.classes) if notes_form == "rule" else None

    # --- calls -------------------------------------------------------------------------------

    def _call(self, phase: Phase, kind: str, messages, *, key_extra: dict, call) -> Completion:
        prompt = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
        seed = int(hashlib.sha256(json.dumps([phase.run_seed, phase.step, PhaseName(phase.name).seed_name, key_extra],
                                             sort_keys=True).encode()).hexdigest()[:8], 16)
        key = hashlib.sha256(json.dumps(
            {"backend": self.backend.identity, "kind": kind, "messages": messages, "seed": seed,
             "temperature": self.temperature, **key_extra}, sort_keys=True).encode()).hexdigest()
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self._log(phase, ModelCall(phase.name, prompt, hit["raw"], cached=True))
                return Completion(hit["raw"], hit["text"], sentence=hit.get("sentence"))
        # Raises BudgetReached before a call past a limit; what it reserves is handed back below.
        reserved = None if phase.budget is None else phase.budget.before_call(phase.name)
        started = time.perf_counter()
        try:
            result = call(seed)
        except BaseException as e:
            if reserved is not None:  # whatever ended it: calls waiting on this one's measure go on
                phase.budget.called(reserved, phase.name, 0, 0.0)
            if isinstance(e, IMLError):  # a failed call is logged with its error, then the run stops
                self._log(phase, ModelCall(phase.name, prompt, "",
                                           duration_ms=1000 * (time.perf_counter() - started), error=str(e)))
            raise
        cost = self.backend.cost(result.tokens_in, result.tokens_out)
        self._log(phase, ModelCall(phase.name, prompt, result.raw, result.tokens_in, result.tokens_out,
                                   result.tokens_cached, 1000 * (time.perf_counter() - started), cost=cost))
        if reserved is not None:
            phase.budget.called(reserved, phase.name, result.tokens_in + result.tokens_out, cost)
        if self.cache is not None:
            self.cache.put(key, {"raw": result.raw, "text": result.text, "sentence": result.sentence})
        return result

    def _log(self, phase: Phase, call: ModelCall) -> None:
        with self._calls_lock:
            self._calls.append(call)
        if phase.watch is not None:
            phase.watch.called(call)

    def drain_calls(self) -> list[ModelCall]:
        with self._calls_lock:
            calls, self._calls = self._calls, []
        return calls

    # --- the three phases ------------------------------------------------------------------------

    def infer(self, notes: str, observations: Sequence[Observation], phase: Phase) -> list[Prediction]:
        if self.rules is not None and self.rule_reading == "stepwise":
            try:
                return self.read_stepwise(self.rules.parse(notes), observations, phase)
            except RuleError:
                pass  # no list yet (step 0's empty notes): the model reads what there is, as a whole
        units, layout = note_units(notes), self.layout
        lines = len(units) if layout.names_line else 0  # the answer names one of these (0: no line asked)
        shown = (numbered(units) if lines else "\n".join(units)) if units else PROMPTS["no_notes"]
        system = fill(layout.system, **self._shared, notes=shown)

        def one(observation: Observation) -> Prediction:
            aligned = self.rules is not None and self.rule_reading == "aligned"
            sample = (fill("rule_aligned_sample", noun=self.task.noun,
                           features=self.rules.aligned(observation.features)) if aligned else observation.text)
            ask = (fill("infer_user_line", observation=sample, example=f"{self.task.classes[0]}{LINE_SEPARATOR}1")
                   if lines else fill("infer_user", observation=sample))
            user = fill(layout.user, notes=shown, ask=ask) if layout.user else ask
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            out = self._call(
                phase, "label", messages, key_extra={"sample": observation.id, "labels": self.task.classes},
                call=lambda seed: self.backend.label(messages, self.task.classes, temperature=self.temperature,
                                                     seed=seed, max_tokens=LABEL_TOKENS, sentences=lines))
            return Prediction(out.text or None, out.raw, out.sentence)

        return self._each(one, observations)

    def in_context(self, examples: Sequence[tuple[Observation, str]], observations: Sequence[Observation],
                   phase: Phase) -> tuple[str, list[Prediction], str]:
        """The in-context baseline: labelled examples in the prompt instead of notes, where the
        layout puts notes."""
        layout = self.layout
        shown = dict(count=len(examples),
                     examples="\n".join(fill("example", observation=o.text, label=label) for o, label in examples))
        system = fill(layout.examples_system, **self._shared, **shown)

        def one(observation: Observation) -> Prediction:
            ask = fill("infer_user", observation=observation.text)
            messages = [{"role": "system", "content": system},
                        {"role": "user", "content": fill(layout.examples_user, **self._shared, **shown, ask=ask)
                         if layout.examples_user else ask}]
            out = self._call(
                phase, "label", messages, key_extra={"sample": observation.id, "labels": self.task.classes},
                call=lambda seed: self.backend.label(messages, self.task.classes, temperature=self.temperature,
                                                     seed=seed, max_tokens=LABEL_TOKENS))
            return Prediction(out.text or None, out.raw)

        return "", self._each(one, observations), f"{len(examples)} training examples in the prompt"

    def count_tokens(self, text: str) -> tuple[int, str]:
        """`text`'s length in tokens, and how it was counted: by the model's own tokenizer where the
        backend runs it here, else estimated (a remote server has no tokenizer to ask)."""
        tokens = getattr(self.backend, "tokens", None)
        if tokens is not None:
            return tokens(text), "the model's tokenizer"
        return math.ceil(len(text) / CHARACTERS_PER_TOKEN), f"estimated at {CHARACTERS_PER_TOKEN} characters a token"

    def _each(self, one, observations: Sequence[Observation]) -> list[Prediction]:
        """`one` over the observations, in their order; in parallel where the backend takes it."""
        if self.backend.max_parallel <= 1:
            return [one(o) for o in observations]
        with ThreadPoolExecutor(max_workers=min(self.backend.max_parallel, len(observations))) as pool:
            return list(pool.map(one, observations))  # map keeps the samples' order

    def induce(self, notes: str, trajectories: Sequence[Trajectory], phase: Phase) -> str:
        if self.rules is not None:
            return self._induce_rule(notes, trajectories, phase)
        messages = [{"role": "system", "content": fill("induce_system", **self._shared)},
                    {"role": "user", "content": fill("induce_user", notes=notes.strip() or PROMPTS["no_notes"],
                                                     trajectories=self._trajectories(trajectories))}]
        out = self._call(phase, "text", messages, key_extra={"batch": [t.observation.id for t in trajectories]},
                         call=lambda seed: self.backend.text(messages, temperature=self.temperature, seed=seed,
                                                             max_tokens=INDUCE_TOKENS))
        return out.text.strip() or "(empty)"

    def operate(self, bullets: str, trajectories: Sequence[Trajectory], phase: Phase) -> str:
        """Operations on the numbered bullets of a playbook, one a line (the playbook learner)."""
        messages = [{"role": "system", "content": fill("operate_system", **self._shared)},
                    {"role": "user", "content": fill("operate_user", bullets=bullets.strip() or PROMPTS["no_notes"],
                                                     trajectories=self._trajectories(trajectories))}]
        out = self._call(phase, "text", messages, key_extra={"batch": [t.observation.id for t in trajectories],
                                                             "operate": True},
                         call=lambda seed: self.backend.text(messages, temperature=self.temperature, seed=seed,
                                                             max_tokens=INDUCE_TOKENS))
        return out.text

    def _trajectories(self, trajectories: Sequence[Trajectory]) -> str:
        lines = []
        for t in trajectories:
            answer = t.prediction.label or f"something that is no class ({t.prediction.raw.strip()[:40]!r})"
            if t.true_label is not None:
                lines.append(fill("trajectory_label", observation=t.observation.text, answer=answer,
                                  label=t.true_label))
            else:
                lines.append(fill("trajectory_binary", observation=t.observation.text, answer=answer,
                                  verdict="right" if t.correct else "wrong"))
        return "\n".join(lines)

    def propose(self, notes: str, trajectories: Sequence[Trajectory], count: int, style: str,
                phase: Phase) -> list[str]:
        """Candidate rules, one a line, written from the samples grouped by their right class."""
        groups: dict[str, list[str]] = {label: [] for label in self.task.classes}
        for t in trajectories:
            groups[t.true_label].append(f"- {t.observation.text}")
        first, second = (self.task.classes + self.task.classes)[:2]
        shown = "\n\n".join(fill("propose_group", label=label, observations="\n".join(lines))
                             for label, lines in groups.items() if lines)
        messages = [{"role": "system", "content": fill("propose_system", **self._shared)},
                    {"role": "user", "content": fill(
                        "propose_user", noun=self.task.noun, groups=shown, count=count,
                        style=fill("propose_one_feature", noun=self.task.noun, first=first, second=second)
                        if style == "one-feature" else "")}]
        out = self._call(phase, "text", messages,
                         key_extra={"batch": [t.observation.id for t in trajectories], "count": count, "style": style},
                         call=lambda seed: self.backend.text(messages, temperature=self.temperature, seed=seed,
                                                             max_tokens=PROPOSAL_TOKENS * count))
        return rule_lines(out.text, count)

    def simplify(self, rule: str, phase: Phase) -> list[str]:
        """The rule rewritten once per feature it names, that feature alone kept (the bank's edit)."""
        messages = [{"role": "system", "content": fill("propose_system", **self._shared)},
                    {"role": "user", "content": fill("simplify_user", **self._shared, rule=rule)}]
        out = self._call(phase, "text", messages, key_extra={"simplify": rule},
                         call=lambda seed: self.backend.text(messages, temperature=self.temperature, seed=seed,
                                                             max_tokens=PROPOSAL_TOKENS * EDITS))
        return rule_lines(out.text, EDITS)

    def revise(self, notes: str, batch_notes: Sequence[str], required_prefix: str, max_words: int,
               phase: Phase) -> str:
        if self.rules is not None:
            return self._revise_rule(notes, batch_notes, required_prefix, phase)
        keep = fill("revise_keep", prefix=required_prefix) if required_prefix.strip() else ""
        messages = [{"role": "system", "content": fill("revise_system", **self._shared)},
                    {"role": "user", "content": fill(
                        "revise_user", notes=notes.strip() or PROMPTS["no_notes"], max_words=max_words, keep=keep,
                        batch_notes="\n\n".join(f"Batch {k}:\n{text}" for k, text in enumerate(batch_notes, 1)))}]
        out = self._call(phase, "text", messages, key_extra={"prefix": required_prefix, "max_words": max_words},
                         call=lambda seed: self.backend.text(messages, temperature=self.temperature, seed=seed,
                                                             max_tokens=TOKENS_PER_WORD * max_words,
                                                             prefix=required_prefix))
        return out.text if out.text.strip() else notes


def rule_lines(text: str, count: int) -> list[str]:
    """The rules in a model's numbered list, without their numbers, bullets or quotes; at most `count`."""
    rules = []
    for line in text.splitlines():
        rule = re.sub(r"^\s*(?:[-*\u2022]|\(?\d+[.):])\s*", "", line).strip().strip('"').strip()
        if len(rule.split()) >= 3 and rule not in rules:
            rules.append(rule)
    return rules[:count]


def rule_card_notes(task: Task) -> str:
    """A task's rule card as plain sentences, one per truth-table row: "A creature that is red
    and has a long tail is a Florp." """
    return "\n".join(rule_sentence(task, row["when"], row["class"]) for row in task.rule_card["table"])

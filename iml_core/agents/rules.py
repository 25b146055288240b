"""Notes run by the engine (`--apply rule`, iml_core.decision_list): an agent's inference with no
model call, for the loop's inference, evaluation and scoring."""

from __future__ import annotations

from typing import Sequence

from iml_core.agents import ModelCall, Phase, Prediction
from iml_core.decision_list import DecisionList, RuleError, RuleForm
from iml_core.tasks import Observation, Task


class RuleApplier:
    """Notes applied by running them (`--apply rule`): an agent's `infer` with no model call. Notes
    that are not a decision list answer nothing, so every sample counts wrong and the answer says why."""

    def __init__(self, task: Task):
        self.form = RuleForm(task.attributes, task.classes)

    def infer(self, notes: str, observations: Sequence[Observation], phase: Phase | None = None) -> list[Prediction]:
        try:
            rules = self.form.parse(notes)
        except RuleError as e:
            return [Prediction(None, f"(the notes are no decision list: {e})") for _ in observations]
        return answers(rules, observations)

    def drain_calls(self) -> list[ModelCall]:
        return []


def answers(rules: DecisionList, observations: Sequence[Observation]) -> list[Prediction]:
    """A list's answer to each sample, with the line (from 1) that gave it."""
    found = []
    for o in observations:
        line = rules.deciding(o.features)
        label = rules.lines[line - 1].label if line <= len(rules.lines) else rules.default
        found.append(Prediction(label, label, line))
    return found

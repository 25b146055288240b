"""How the offline learner writes decision lists (notes form rule, issue 35): fitted to what it saw
(iml_core.decision_list.fit), merged as an LLM would merge them, seeing only the lists."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from iml_core.agents import Phase, Prediction, Trajectory
from iml_core.agents.rules import answers
from iml_core.decision_list import DecisionList, RuleError, RuleForm, fit, simplest_fits
from iml_core.tasks import Attribute, Observation

MAX_RULE_LINES = 8  # as many IF lines as the grammar lets a model write


class RuleListLearner:
    """Mixed into iml_core.agents.offline.OfflineRuleLearner; `rules` is its task's RuleForm, or None
    for notes in words."""

    classes: tuple[str, ...]

    def __init__(self, attributes: Sequence[Attribute], classes: Sequence[str], notes_form: str = "text"):
        super().__init__(attributes, classes)
        # Rule notes: it writes decision lists fitted to what it saw and reads one by running it, as
        # the engine does.
        self.rules = RuleForm(attributes, classes) if notes_form == "rule" else None

    def _run_list(self, notes: str, observations: Sequence[Observation]) -> list[Prediction] | None:
        """The notes run, when they are a decision list; None for notes in words."""
        rules = self._parsed(notes) if self.rules is not None else None
        if rules is None:
            return None
        return answers(rules, observations)

    @staticmethod
    def _examples(trajectories: Sequence[Trajectory]) -> list[tuple[dict, str]]:
        """(features, class) of each sample whose class it learned: told, or its own right answer."""
        return [(t.observation.features, t.true_label or t.prediction.label) for t in trajectories
                if t.true_label is not None or t.correct]

    def _induce_rules(self, trajectories: Sequence[Trajectory]) -> str:
        examples = self._examples(trajectories)
        return str(fit(examples, self.rules)) if examples else "(no decision list: no sample's class was learned)"

    def _revise_rules(self, notes: str, batch_notes: Sequence[str], required_prefix: str) -> str:
        """Like an LLM, it sees only the old list and the batches' lists: the kept lines first, then
        the lines most of them share (a line every batch wrote is the one least likely chance); ELSE
        as most of them say."""
        lists = [rules for text in [notes, *batch_notes] if (rules := self._parsed(text)) is not None]
        if not lists:
            return notes
        kept = [str(line) for line in self.rules.parse(required_prefix + "\nELSE " + self.classes[0]).lines] \
            if required_prefix.strip() else []
        votes = Counter(str(line) for rules in lists for line in rules.lines)
        order = {text: i for i, text in enumerate(dict.fromkeys(str(line) for rules in lists for line in rules.lines))}
        # The more lists share a line, the surer it is; of two as sure, the narrower goes first, since
        # a line placed above a narrower one with another class would hide it.
        ranked = sorted((text for text in votes if text not in kept),
                        key=lambda text: (-votes[text], -text.count(" AND "), order[text]))
        default = Counter(rules.default for rules in lists).most_common(1)[0][0]
        return "\n".join([*(kept + ranked)[:MAX_RULE_LINES], f"ELSE {default}"])

    def _parsed(self, text: str):
        try:
            return self.rules.parse(text)
        except RuleError:
            return None

    def propose_rules(self, trajectories: Sequence[Trajectory], count: int, evidence: Sequence,
                      phase: Phase) -> list[str]:
        """The `count` lists worth most on the recent labelled samples, as a model's proposals are
        fitted once it has chosen attributes; this agent chooses them all."""
        examples = [(s.features, s.label) for s in evidence]
        return [str(rules) for rules in simplest_fits(examples, self.rules, count=count)] if examples else []

    def refine_rule(self, rule: str, wrong, phase: Phase) -> list[str]:
        """The rule with lines fitted to the samples it sorts wrong put first."""
        rules = self._parsed(rule)
        fixes = fit([(o.features, label) for o, _, label in wrong], self.rules, min_cover=1)
        if rules is None or not fixes.lines:
            return []
        return [str(DecisionList((fixes.lines + rules.lines)[:MAX_RULE_LINES], rules.default))]

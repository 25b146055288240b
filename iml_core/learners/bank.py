"""The hypothesis bank (after HypoGeniC): from each minibatch the agent proposes candidate rules,
written from the samples grouped by their right class (Agent.propose). At the end of the step each
candidate and each rule already in the bank is scored by applying it, as inference applies notes,
to the recent labelled experience (the last `score_window` training samples seen). The bank keeps
the `bank_size` best; the notes are its best rule. Momentum here: the rule that is the notes is
replaced only by one that beats it by more than `margin` (a share of the samples scored).

The bank, best first, is the learner's state: stored with each step, so a resumed run starts from
the same bank. A rule's score is measured afresh each step on the window as it is then; the answers
to a rule on a sample it met before come from the response cache.

In rule form (notes form rule) every candidate is a decision list written under the task's grammar
and scored by running it, with no model call; the model is also shown the best list with the
samples it sorts wrong and asked for a corrected one (refine, after Qiu et al.), and the engine
tries the best list with each line or condition cut (free)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Sequence

from iml_core.agents import PhaseName, Trajectory
from iml_core.agents.rules import RuleApplier
from iml_core.decision_list import CONDITION_COST, DecisionList, Line, RuleError, worth
from iml_core.learners import Candidate, Update, enforce_revision, percent

if TYPE_CHECKING:  # the loop and the settings are above the learners
    from iml_core.config import RunConfig
    from iml_core.learner import StepTools



REFINE_SHOWN = 8  # samples a list sorts wrong, shown to the model to refine it
# Two classes: a rule right on at most this share of the window has its classes the wrong way round
# (0 of 8 means its swap is right every time), so it is scored again with them swapped.
FLIP_BELOW = 0.25


def _same(text: str) -> str:
    return " ".join(text.lower().split())


def _scored_new(tools: StepTools, pool: dict[str, Candidate], window: list, origin: str, parent: Candidate,
                rules: list[str]) -> list[Candidate]:
    """The rules not in the pool yet, as candidates of `origin` scored on the window like the rest."""
    new = []
    for rule in rules:
        if _same(rule) not in pool:
            pool[_same(rule)] = candidate = Candidate(origin, rule, minibatch=parent.minibatch)
            candidate.right, candidate.scored = tools.score(rule, window), len(window)
            new.append(candidate)
    return new


class BankLearner:
    def __init__(self, config: RunConfig, state: str | None):
        self.config = config
        self.bank: list[str] = json.loads(state) if state else []
        self.proposed: list[tuple[int, str]] = []  # (minibatch, rule) of the step in flight
        self._conditions: dict[str, int] = {}

    def worth(self, tools: StepTools, candidate: Candidate) -> float:
        """What a scored candidate is ranked by: samples right; in rule form less CONDITION_COST per
        condition, so that a list with a line per wrong label does not win the window it was fitted
        to (a tie between lists still goes to the shorter one)."""
        if self.config.notes_form != "rule":
            return candidate.right
        if candidate.text not in self._conditions:
            try:
                self._conditions[candidate.text] = RuleApplier(tools.task).form.parse(candidate.text).conditions
            except RuleError:
                self._conditions[candidate.text] = None
        conditions = self._conditions[candidate.text]
        # Text that is no list sorts nothing, and a long list that sorts little is worth less than
        # nothing: below every list, whatever it scores.
        return float("-inf") if conditions is None else worth(candidate.right, conditions)

    def induce(self, tools: StepTools, notes: str, trajectories: Sequence[Trajectory], minibatch: int) -> str:
        if self.config.notes_form == "rule":  # decision lists, each a call under the task's grammar
            rules = tools.ask(PhaseName.INDUCE, tools.agent.propose_rules, trajectories, self.config.proposals,
                              tools.recent(self.config.score_window))
            self.proposed += [(minibatch, rule) for rule in rules]
            return "\n\n".join(rules) or "(no decision list proposed)"
        rules = tools.ask(PhaseName.INDUCE, tools.agent.propose, notes, trajectories, self.config.proposals,
                          self.config.proposal_style)
        self.proposed += [(minibatch, rule) for rule in rules]
        return "\n".join(f"{n}. {rule}" for n, rule in enumerate(rules, 1)) or "(no rule proposed)"

    def update(self, tools: StepTools, notes: str, batch_notes: Sequence[str]) -> Update:
        window = tools.recent(self.config.score_window)
        n = len(window)
        held = self.bank or ([notes] if notes.strip() else [])  # a run's first notes are its first rule
        pool: dict[str, Candidate] = {}
        for position, rule in enumerate(held):
            pool.setdefault(_same(rule), Candidate("notes" if position == 0 else "bank", rule))
        for minibatch, rule in self.proposed:
            pool.setdefault(_same(rule), Candidate("proposal", rule, minibatch=minibatch))
        self.proposed = []
        candidates = list(pool.values())
        if not candidates:  # no notes yet and no rule proposed: nothing to choose from
            return Update(enforce_revision("", notes, self.config.max_note_words), [], json.dumps(self.bank))
        incumbent = candidates[0] if held else None
        rule_form = self.config.notes_form == "rule"
        for candidate in candidates:
            candidate.right, candidate.scored = tools.score(candidate.text, window), n
            # Scoring a list is free, and one that sorts every sample may still be worth less than a
            # shorter one: in rule form all are scored.
            if candidate is incumbent and candidate.right == n and not rule_form:
                return self._unbeatable(incumbent, candidates)
        if rule_form:
            candidates += self._refined(tools, candidates, pool, window)
            candidates += self._pruned(tools, candidates, pool, window)
        else:
            candidates += self._flipped(tools, candidates, pool, window)
            if self.config.edit:
                candidates += self._edits(tools, candidates, pool, window)
        # Best first; on a tie the shorter rule, then the one held longer (the sort is stable).
        ranked = sorted(candidates, key=lambda c: (-self.worth(tools, c), len(c.text.split())))
        best = ranked[0]
        needed = self.config.margin * n
        if (incumbent is not None and best is not incumbent
                and self.worth(tools, best) - self.worth(tools, incumbent) <= needed):
            best = incumbent
        bank = [best] + [c for c in ranked if c is not best][:self.config.bank_size - 1]
        for candidate in candidates:
            candidate.decision, candidate.reason = self._decide(candidate, best, incumbent, bank, needed, n, tools)
        self.bank = [c.text for c in bank]
        return Update(enforce_revision("", best.text, self.config.max_note_words), candidates, json.dumps(self.bank))

    def _unbeatable(self, notes: Candidate, candidates: list[Candidate]) -> Update:
        """The notes answered every sample of the window right: no rule can beat them by the margin, so
        the others are not scored (their calls saved) and the bank stays as it was."""
        notes.decision = "chosen"
        notes.reason = f"{percent(notes.right, notes.scored)} of the last {notes.scored} samples; it stays the notes"
        for candidate in candidates[1:]:
            candidate.decision = "kept" if candidate.origin == "bank" else "rejected"
            candidate.reason = (f"not scored: the notes answered all {notes.scored} samples right, which no rule "
                                "can beat by more than the margin")
        return Update(enforce_revision("", notes.text, self.config.max_note_words), candidates, json.dumps(self.bank))

    @staticmethod
    def _flipped(tools: StepTools, candidates: list[Candidate], pool: dict[str, Candidate],
                 window: list) -> list[Candidate]:
        """On two classes, each proposal far below chance with its two class names swapped, scored as
        the rest were: a small model often names the deciding feature and the classes the wrong way
        round ("scales is a Zindle ... fur is a Florp", 0 of 8), and the swap is the rule it saw."""
        classes = list(tools.task.classes)
        if len(classes) != 2 or not window:
            return []
        swap = {classes[0]: classes[1], classes[1]: classes[0]}
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, classes)) + r")\b")
        flipped = []
        for candidate in [c for c in candidates if c.origin == "proposal" and c.right <= FLIP_BELOW * len(window)]:
            flipped += _scored_new(tools, pool, window, "flip", candidate,
                                   [pattern.sub(lambda m: swap[m.group(1)], candidate.text)])
        return flipped

    @staticmethod
    def _edits(tools: StepTools, candidates: list[Candidate], pool: dict[str, Candidate],
               window: list) -> list[Candidate]:
        """The best new proposal once per feature it names with the others dropped, each scored as the
        rest were: an edit that keeps the deciding feature alone wins over the rule that joined a
        spurious one to it (a tie goes to the shorter rule)."""
        new = [c for c in candidates if c.origin == "proposal"]
        if not new:
            return []
        best = max(new, key=lambda c: c.right)
        return _scored_new(tools, pool, window, "edit", best, tools.ask(PhaseName.INDUCE, tools.agent.simplify,
                                                                          best.text))

    def _refined(self, tools: StepTools, candidates: list[Candidate], pool: dict[str, Candidate],
                 window: list) -> list[Candidate]:
        """Qiu et al.'s refinement: the model shown the best list and the window's samples it sorts
        wrong, asked for a corrected list (one call; none when the best sorts every sample right)."""
        best = max(candidates, key=lambda c: self.worth(tools, c))
        rules = RuleApplier(tools.task)
        said = rules.infer(best.text, [s.observation for s in window])
        wrong = [(s.observation, p.label or "no class", s.label) for s, p in zip(window, said, strict=True)
                 if p.label != s.label][:REFINE_SHOWN]
        if not wrong:
            return []
        return _scored_new(tools, pool, window, "refine", best,
                           tools.ask(PhaseName.INDUCE, tools.agent.refine_rule, best.text, wrong))

    def _pruned(self, tools: StepTools, candidates: list[Candidate], pool: dict[str, Candidate],
                window: list) -> list[Candidate]:
        """The best list with one line, or one condition, dropped: run by the engine, so free. The
        cut worth the most is kept as an edit when it is worth at least as much as the list (a tie
        goes to the shorter list when the bank ranks them), which takes a spurious condition or
        line out."""
        best = max(candidates, key=lambda c: (self.worth(tools, c), -len(c.text.split())))
        form = RuleApplier(tools.task).form
        try:
            rules = form.parse(best.text)
        except RuleError:
            return []
        cuts = []
        for i, line in enumerate(rules.lines):
            cuts.append(DecisionList(rules.lines[:i] + rules.lines[i + 1:], rules.default))
            for j in range(len(line.conditions) if len(line.conditions) > 1 else 0):
                shorter = Line(line.conditions[:j] + line.conditions[j + 1:], line.label)
                cuts.append(DecisionList(rules.lines[:i] + (shorter,) + rules.lines[i + 1:], rules.default))
        scored = []
        for cut in cuts:
            text = str(cut)
            if _same(text) not in pool:
                right = tools.score(text, window)
                scored.append((worth(right, cut.conditions), right, text))
        most, right, text = max(scored, default=(float("-inf"), 0, ""))
        if most < self.worth(tools, best):
            return []
        pool[_same(text)] = edit = Candidate("edit", text, right, len(window), minibatch=best.minibatch)
        return [edit]

    def _decide(self, candidate: Candidate, best: Candidate, incumbent: Candidate | None, bank: list[Candidate],
                needed: float, n: int, tools: StepTools) -> tuple[str, str]:
        rule_form = self.config.notes_form == "rule"
        scored = f"{percent(candidate.right, n)} of the last {n} samples"
        if rule_form:
            conditions = self._conditions[candidate.text]
            scored += ("" if conditions is None else f" with {conditions} condition{'' if conditions == 1 else 's'}") \
                + f": {self._said_worth(tools, candidate)}, {CONDITION_COST:g} less a condition"
        if candidate is best:
            if incumbent is None or best is incumbent:
                beaten = [c for c in bank if c is not best and self.worth(tools, c) > self.worth(tools, best)]
                return "chosen", scored + (f"; it stays the notes: no rule beat it by more than the margin "
                                           f"({needed:g} samples)" if beaten else "; the best of the bank")
            notes = self._said_worth(tools, incumbent) if rule_form else percent(incumbent.right, n)
            return "chosen", scored + f"; it beats the notes' {notes} by more than the margin ({needed:g} samples)"
        if candidate is incumbent:
            winner = self._said_worth(tools, best) if rule_form else f"with {best.right} right"
            return "replaced", scored + (f"; beaten by more than the margin by a rule {winner}"
                                         + ("; it stays in the bank" if candidate in bank else ""))
        if candidate in bank:
            return "kept", scored + "; kept in the bank, behind the notes"
        dropped = "replaced" if candidate.origin == "bank" else "rejected"
        return dropped, scored + f"; below the bank's {len(bank)} best"

    def _said_worth(self, tools: StepTools, candidate: Candidate) -> str:
        worth = self.worth(tools, candidate)
        return "no decision list, worth less than any" if worth == float("-inf") else f"worth {worth:g}"

"""The offline rule learner: In-Memory Learning with counting instead of a language model.

It keeps everything it knows in the notes, in plain English, one line per class:

    - Florp: wing type is feathered (100%), diet is plants (90%).

"90%" is the share of the class's recent examples that had the trait; traits that do not beat an
even split by LISTED_MARGIN points are left out. It reads those lines back to classify (a
naive-Bayes score over what the notes say), writes batch notes that count the traits of each class
in a batch (induction), and revises by moving each class's shares a fixed step (ALPHA) toward what
the batch notes say. Like an LLM, a revision sees only the old notes and the batch notes in front
of it, never a hidden history: so small batches make noisy revisions and accumulation averages
them out. Under momentum it appends correction lines instead of restating; a later line about a
class corrects the attributes it mentions in earlier ones.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from iml_core.agents import ModelCall, Phase, PhaseName, Prediction, Trajectory
from iml_core.agents.rule_notes import SMOOTHING, Counts, Rule, RuleNotes, percent
from iml_core.agents.offline_rules import RuleListLearner
from iml_core.diff import take_words, word_count, words
from iml_core.tasks import Attribute, Observation

ALPHA = 0.25  # how far one revision moves a class's shares toward the batch's
# Under momentum the learner corrects an attribute only when its share moved this many points
# (or a trait became typical or stopped being so): kept notes are amended, not restated.
CORRECTION = 5
TIE = 1e-9


class OfflineRuleLearner(RuleListLearner, RuleNotes):
    """The agent: what to infer, induce and revise, in the notes RuleNotes reads and writes."""

    description = "rule learner (no LLM)"

    # --- inference -------------------------------------------------------------------------

    def _log_shares(self, rule: Rule | None) -> dict[str, dict[str, float]]:
        """log P(value | class) per attribute, as the notes say; smoothed so one miss is not fatal."""
        return {
            a.name: {v: math.log((share + SMOOTHING) / (1 + SMOOTHING * len(a.values)))
                     for v, share in self._shares(rule, a.name).items()}
            for a in self.attributes}

    @staticmethod
    def _matching_unit(units: list[tuple[int, list[tuple[str, str]]]], observation: Observation) -> int | None:
        """The unit about the chosen class that states most of the observation's traits (the
        latest one on a tie: later lines correct earlier ones)."""
        if not units:
            return None
        return max(units, key=lambda unit: (sum(observation.features.get(a) == v for a, v in unit[1]), unit[0]))[0]

    def infer(self, notes: str, observations: Sequence[Observation], phase: Phase) -> list[Prediction]:
        run = self._run_list(notes, observations)
        if run is not None:
            return run
        units = self._units_by_class(notes)
        rules = self.parse_notes(notes)
        tables = {name: self._log_shares(rules.get(name)) for name in self.classes}
        floor = math.log(SMOOTHING / (1 + SMOOTHING))  # a value the task never listed
        predictions = []
        for observation in observations:
            scores = {name: sum(table[a].get(v, floor) for a, v in observation.features.items() if a in table)
                      for name, table in tables.items()}
            best = max(scores.values())
            tied = [name for name in self.classes if scores[name] >= best - TIE]
            # Ties (always so with empty notes) are broken at random, reproducibly from the seed.
            rng = random.Random(f"{phase.run_seed}/{phase.step}/{PhaseName(phase.name).seed_name}/{observation.id}")
            label = tied[0] if len(tied) == 1 else rng.choice(tied)
            predictions.append(Prediction(label, label, self._matching_unit(units.get(label, []), observation)))
        return predictions

    # --- induction -------------------------------------------------------------------------

    def induce(self, notes: str, trajectories: Sequence[Trajectory], phase: Phase) -> str:
        if self.rules is not None:
            return self._induce_rules(trajectories)
        right = sum(t.correct for t in trajectories)
        told = all(t.true_label is not None for t in trajectories)
        by_class: dict[str, list[Observation]] = {}
        for t in trajectories:
            # With only right/wrong feedback, a sample is evidence for a class only when the
            # answer was right; a wrong answer says what it is not, which this learner leaves out.
            name = t.true_label if told else (t.prediction.label if t.correct else None)
            if name is not None:
                by_class.setdefault(name, []).append(t.observation)
        if told:
            lines = [f"{len(trajectories)} samples, {right} answered right."]
            seen = "samples"
        else:
            lines = [f"{len(trajectories)} samples, {right} answered right; the class of the others was not told."]
            seen = "answered right"
        for name in self.classes:
            examples = by_class.get(name)
            if not examples:
                continue
            counts = []
            for attribute in self.attributes:
                for value in attribute.values:
                    k = sum(o.features.get(attribute.name) == value for o in examples)
                    if k:
                        counts.append(f"{attribute.name} is {value} ({k} of {len(examples)})")
            lines.append(f"- {name}, {len(examples)} {seen}: " + ", ".join(counts) + ".")
        return "\n".join(lines)

    # --- revision --------------------------------------------------------------------------

    def _updated_rules(self, written: dict[str, Rule], batch_notes: Sequence[str]) -> dict[str, Rule]:
        """Every value's share (in percent) for each class the batch notes speak of, moved ALPHA of
        the way from what the notes say toward what the batches saw; other classes as written."""
        pooled: dict[str, tuple[int, Counts]] = {}
        for text in batch_notes:
            for name, (n, counts) in self._parse_batch_note(text).items():
                total, merged = pooled.get(name, (0, {}))
                for attribute, by_value in counts.items():
                    for value, k in by_value.items():
                        merged.setdefault(attribute, {})[value] = merged.get(attribute, {}).get(value, 0) + k
                pooled[name] = (total + n, merged)
        rules = dict(written)
        for name, (n, counts) in pooled.items():
            rule: Rule = {}
            for attribute in self.attributes:
                batch = {v: counts.get(attribute.name, {}).get(v, 0) / n for v in attribute.values}
                # A class the notes do not know yet starts from no opinion: every value equally likely.
                before = self._shares(written.get(name), attribute.name)
                rule[attribute.name] = {v: percent((1 - ALPHA) * before[v] + ALPHA * batch[v])
                                        for v in attribute.values}
            rules[name] = rule
        return rules

    def revise(self, notes: str, batch_notes: Sequence[str], required_prefix: str, max_words: int,
               phase: Phase) -> str:
        if self.rules is not None:
            return self._revise_rules(notes, batch_notes, required_prefix)
        wanted = self._updated_rules(self.parse_notes(notes), batch_notes)
        if not required_prefix.strip():
            return "\n".join(self.render_line(name, wanted[name]) for name in self.classes if name in wanted)
        # Momentum: the beginning of the notes stays, so the learner amends instead of restating.
        # It appends correction lines, the most needed first, writing no more words than momentum
        # leaves free (the old words after the required prefix), though always its most needed
        # correction, so high momentum slows learning rather than stopping it. When the cap leaves
        # no room, it gives up that free tail and writes the corrections the prefix alone needs.
        free = word_count(notes) - word_count(required_prefix)
        amended = self._amend(notes, wanted, free, max_words)
        if amended is None:
            amended = self._amend(self._complete_cut_line(required_prefix, wanted), wanted, free, max_words)
        return notes if amended is None else amended

    def _amend(self, text: str, wanted: dict[str, Rule], budget: int, max_words: int) -> str | None:
        """`text` with the corrections that fit the budget and the cap (whole lines only: a cut
        correction would say something else), or None when none fits under the cap."""
        spent = 0
        for line in self._corrections(text, wanted):
            cost = word_count(line)
            if (spent and spent + cost > budget) or word_count(text) + cost > max_words:
                continue
            if text.rsplit("\n", 1)[-1].strip() == "-":
                # The kept prefix ends on a line's bullet alone: the correction goes on it, not
                # under an empty "-" line.
                text = text.rstrip() + " " + line.removeprefix("- ")
            else:
                text = (text + "\n" if text and not text.endswith("\n") else text) + line
            spent += cost
        return text if spent else None

    def _complete_cut_line(self, prefix: str, wanted: dict[str, Rule]) -> str:
        """When the prefix ends inside a class's line and the wanted line begins the same way, finish it."""
        cut_line = prefix.rsplit("\n", 1)[-1]
        about = self._class_of_line(cut_line)
        if about is None or about[0] not in wanted:
            return prefix
        line, n = self.render_line(about[0], wanted[about[0]]), word_count(cut_line)
        if words(line)[:n] == words(cut_line):
            return prefix + line[len(take_words(line, n)):]
        return prefix

    def _corrections(self, text: str, wanted: dict[str, Rule]) -> list[str]:
        """Lines that make `text` say what the learner wants, the largest correction first: a class
        the text does not know yet, then attributes whose share moved by CORRECTION points or more
        or whose typical value changed."""
        written = self.parse_notes(text)
        ranked = []
        for position, name in enumerate(self.classes):
            if name not in wanted:
                continue
            if name not in written:
                ranked.append((float("inf"), position, self.render_line(name, wanted[name])))
                continue
            moves = {}
            for attribute in self.attributes:
                before, after = self._shares(written[name], attribute.name), self._shares(wanted[name], attribute.name)
                move = max(abs(before[v] - after[v]) for v in before) * 100
                listing_changed = self._listed(written[name], attribute.name).keys() != \
                    self._listed(wanted[name], attribute.name).keys()
                if listing_changed or move >= CORRECTION:
                    moves[attribute.name] = move
            if moves:
                ranked.append((sum(moves.values()), position, self.render_line(name, wanted[name], list(moves))))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        return [line for _, _, line in ranked]

    def propose(self, notes: str, trajectories: Sequence[Trajectory], count: int, style: str,
                phase: Phase) -> list[str]:
        """Candidate rules in the notes' own lines, over the attributes that best sort the batch
        alone (each value read as its most frequent class): one attribute each (`one-feature`), or
        the best one joined by each of the next (`free`), as a model's free rules join a spurious one."""
        def sorted_right(attribute: Attribute) -> int:
            return sum(max(sum(t.observation.features.get(attribute.name) == v and t.true_label == name
                               for t in trajectories) for name in self.classes) for v in attribute.values)

        ranked = sorted(self.attributes, key=lambda a: -sorted_right(a))
        chosen = [[a] for a in ranked] if style == "one-feature" else [[ranked[0], a] for a in ranked[1:]]
        rules = []
        for attributes in chosen[:count]:
            lines = []
            for name in self.classes:
                mine = [t.observation for t in trajectories if t.true_label == name]
                if mine:
                    rule = {a.name: {v: percent(sum(o.features.get(a.name) == v for o in mine) / len(mine))
                                     for v in a.values} for a in attributes}
                    lines.append(self.render_line(name, rule, [a.name for a in attributes]))
            rules.append("\n".join(lines))
        return rules

    def operate(self, bullets: str, trajectories: Sequence[Trajectory], phase: Phase) -> str:
        """Operations that make the playbook's class lines what a revision without momentum would
        write from this batch: EDIT a class's line, or ADD one for a class it lacks."""
        numbered = {}
        for line in bullets.splitlines():
            number, _, text = line.partition(". ")
            about = self._class_of_line(text)
            if number.isdigit() and about is not None:
                numbered.setdefault(about[0], (int(number), text))
        current = "\n".join(text for _, text in numbered.values())
        wanted = self.revise(current, [self.induce(current, trajectories, phase)], "", 10_000, phase)
        operations = []
        for line in wanted.splitlines():
            about = self._class_of_line(line)
            if about is not None and about[0] in numbered:
                if numbered[about[0]][1] != line:
                    operations.append(f"EDIT {numbered[about[0]][0]}: {line}")
            elif about is not None:
                operations.append(f"ADD: {line}")
        return "\n".join(operations)

    def simplify(self, rule: str, phase: Phase) -> list[str]:
        """The rule once per attribute it names, with its lines' other attributes dropped."""
        named = self.parse_notes(rule)
        attributes = list(dict.fromkeys(a for traits in named.values() for a in traits))
        if len(attributes) < 2:
            return []
        return ["\n".join(self.render_line(name, {a: traits[a]}, [a]) for name, traits in named.items() if a in traits)
                for a in attributes]

    def in_context(self, examples: Sequence[tuple[Observation, str]], observations: Sequence[Observation],
                   phase: Phase) -> tuple[str, list[Prediction], str]:
        """The in-context baseline: notes fitted to the examples at once (each class's line states
        the shares of its examples' traits), then read as any notes are."""
        lines = []
        for name in self.classes:
            mine = [o for o, label in examples if label == name]
            if mine:
                rule = {a.name: {v: percent(sum(o.features.get(a.name) == v for o in mine) / len(mine))
                                 for v in a.values} for a in self.attributes}
                lines.append(self.render_line(name, rule))
        notes = "\n".join(lines)
        how = f"its classifier fitted on {len(examples)} training examples"
        return notes, self.infer(notes, observations, phase), how

    def count_tokens(self, text: str) -> tuple[int, str]:
        """No model reads it: its length is counted in words."""
        return word_count(text), "words (no model)"

    def drain_calls(self) -> list[ModelCall]:
        return []  # no model, so no calls to log


def rule_card_notes(task) -> str:
    """A benchmark's rule card as the rule learner's own lines: each class with the shares of the
    values its truth-table rows give its relevant attributes."""
    card, learner = task.rule_card, OfflineRuleLearner(task.attributes, task.classes)
    lines = []
    for name in task.classes:
        rows = [row["when"] for row in card["table"] if row["class"] == name]
        rule = {a: {v: 100 * sum(r[a] == v for r in rows) // len(rows) for v in {r[a] for r in rows}}
                for a in card["relevant"]}
        lines.append(learner.render_line(name, rule))
    return "\n".join(lines)

"""Scoring notes against a task's rule card: what the notes know, not only how well they score.

For each class, the notes' description of it is every part of a sentence that names it (a sentence
naming one class belongs to it whole; one naming several is split at each name). In a description,
an attribute counts as cited when one of its values is, in any of the forms a writer uses: "colour
is red" (the rule learner), the preset's phrase ("has a long tail"), the phrase without its verb
("long tail", "long tails") or, where only one attribute has that value, the bare value ("red").

- A relevant attribute *decides* a class when the class's rows of the truth table do not allow
  every value of it. The notes *recall* it when every value they cite for the class is one the
  table allows; they get it *wrong* when they cite only values it does not allow.
- Rule recall is the share of (class, deciding attribute) pairs recalled; distractors are the
  irrelevant attributes the notes cite for any class.
- The discovery rate is HypoBench's (true rules found, times how right each one is), judged here
  rather than by a model, with each class's rows of the truth table as one true rule. A class's rule
  is *found* when its description cites at least one of its deciding attributes. Its *correctness*
  is the mean, over its deciding attributes, of the share of the values cited for the attribute
  that the table allows for the class (1 for a recalled attribute, 0 for a wrong or uncited one,
  1/2 for "red or blue" where only red is right). The discovery rate is (rules found / rules) x
  (mean correctness of the found rules), which is the mean of found x correctness over the classes.
  A class that no single attribute decides (the middle ranges of a count rule) has nothing to judge
  and is left out; when no class is left the rate is None.

A value right after a negation in the same clause ("not blue", "never red or blue") is not a
citation; beyond that the scorer reads names, not logic.

Notes that are a decision list (iml_core.decision_list) are read by their logic instead: the list is
run on every row of the truth table, with every value of each other attribute the list tests. A
class's deciding attributes are recalled when the list names the class for all of its rows, whatever
the other attributes are; the class's correctness is the share of those (row, other values) it gets
right, and distractors are the irrelevant attributes the list tests.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from iml_core.attribution import note_units
from iml_core.decision_list import RuleError, RuleForm
from iml_core.tasks import Attribute, Task

# Words that begin a preset phrase without saying which value it is about.
_LEADING = {"has", "is", "are", "eats", "lives", "walks", "a", "an", "the", "in", "on", "by", "at", "covered"}
_NEGATIONS = {"not", "never", "no", "isn't", "aren't", "without", "neither", "nor", "rarely", "seldom"}
NEGATION_REACH = 3  # words before a value that a negation reaches, within its clause


def _flexible(phrase: str) -> str:
    """A regex for a phrase whose words may be plural and are separated by any white space."""
    return r"\s+".join(re.escape(word) + r"(?:e?s)?" for word in phrase.split())


def _value_forms(attribute: Attribute, value: str, ambiguous: bool) -> list[str]:
    forms = [f"{attribute.name} is {value}", f"{attribute.name}: {value}"]
    if attribute.phrases:
        phrase = attribute.phrase(value)
        words = phrase.split()
        while words and words[0].lower() in _LEADING:
            words = words[1:]
        forms += [phrase, " ".join(words)] if words else [phrase]
    if not ambiguous:
        forms.append(value)
    return [f for f in dict.fromkeys(forms) if f.strip()]


def _negated(text: str, start: int) -> bool:
    clause = re.split(r"[,;:()\n]", text[:start])[-1]
    return any(word in _NEGATIONS for word in clause.lower().split()[-NEGATION_REACH:])


@dataclass(frozen=True)
class ClassVerdict:
    name: str
    described: bool  # the notes say something about the class
    recalled: tuple[str, ...]  # deciding attributes cited with allowed values only
    wrong: tuple[str, ...]  # deciding attributes cited with values the table does not allow
    missing: tuple[str, ...]  # deciding attributes not recalled (wrong ones included)
    distractors: tuple[str, ...]  # irrelevant attributes cited
    # found x correctness of the class's rule (module docstring); None when no attribute decides it
    discovery: float | None = None

    @property
    def verdict(self) -> str:
        if self.wrong:
            return "wrong"
        if not self.missing:
            return "complete"
        return "partial" if self.recalled else ("missing" if not self.described else "no rule")


@dataclass(frozen=True)
class TruthScore:
    rule_recall: float
    distractors: int
    classes: tuple[ClassVerdict, ...] = field(default_factory=tuple)
    discovery_rate: float | None = None  # None: no class is decided by any single attribute


class TruthScorer:
    def __init__(self, task: Task):
        if not task.rule_card:
            raise ValueError(f"{task.name} has no rule card to score notes against")
        card = task.rule_card
        self.classes = task.classes
        self.relevant = tuple(card["relevant"])
        values_seen: dict[str, int] = {}
        for attribute in task.attributes:
            for value in attribute.values:
                values_seen[value.lower()] = values_seen.get(value.lower(), 0) + 1
        self._patterns = []  # (attribute, value, compiled regex)
        for attribute in task.attributes:
            for value in attribute.values:
                forms = _value_forms(attribute, value, ambiguous=values_seen[value.lower()] > 1)
                regex = r"(?<![\w-])(?:" + "|".join(_flexible(f) for f in forms) + r")(?![\w-])"
                self._patterns.append((attribute, value, re.compile(regex, re.IGNORECASE)))
        names = sorted(self.classes, key=len, reverse=True)
        self._class_pattern = re.compile(
            r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?:e?s)?(?![\w-])", re.IGNORECASE)
        self._canonical = {n.lower(): n for n in self.classes}
        self.allowed: dict[str, dict[str, set[str]]] = {
            name: {a: {row["when"][a] for row in card["table"] if row["class"] == name} for a in self.relevant}
            for name in self.classes}
        all_values = {a.name: set(a.values) for a in task.attributes}
        self.deciding = {name: tuple(a for a in self.relevant if self.allowed[name][a] != all_values[a])
                         for name in self.classes}
        self.table = card["table"]
        self.form = RuleForm(task.attributes, task.classes)

    def descriptions(self, notes: str) -> dict[str, list[str]]:
        """The parts of the notes about each class."""
        found: dict[str, list[str]] = {name: [] for name in self.classes}
        # A semicolon ends a statement as a full stop does ("Florp are red; blue ones are Zindle").
        for sentence in (clause for unit in note_units(notes) for clause in unit.split(";")):
            mentions = list(self._class_pattern.finditer(sentence))
            for i, match in enumerate(mentions):
                start = 0 if i == 0 else match.start()
                end = mentions[i + 1].start() if i + 1 < len(mentions) else len(sentence)
                found[self._canonical[match.group(1).lower()]].append(sentence[start:end])
        return found

    def cited(self, text: str) -> dict[str, set[str]]:
        """Attribute -> the values `text` cites (negated mentions left out)."""
        out: dict[str, set[str]] = {}
        for attribute, value, pattern in self._patterns:
            if any(not _negated(text, match.start()) for match in pattern.finditer(text)):
                out.setdefault(attribute.name, set()).add(value)
        return out

    def score(self, notes: str) -> TruthScore:
        rules = self._list(notes)
        if rules is not None:
            return self._score_list(rules)
        verdicts, pairs, recalled_pairs, distractors = [], 0, 0, set()
        for name, parts in self.descriptions(notes).items():
            cited = self.cited(" \n ".join(parts))
            recalled = tuple(a for a in self.deciding[name] if cited.get(a) and cited[a] <= self.allowed[name][a])
            wrong = tuple(a for a in self.deciding[name] if cited.get(a) and not cited[a] & self.allowed[name][a])
            missing = tuple(a for a in self.deciding[name] if a not in recalled)
            irrelevant = tuple(sorted(a for a in cited if a not in self.relevant))
            verdicts.append(ClassVerdict(name, bool(parts), recalled, wrong, missing, irrelevant,
                                         self._discovery(name, cited)))
            pairs += len(self.deciding[name])
            recalled_pairs += len(recalled)
            distractors.update(irrelevant)
        judged = [v.discovery for v in verdicts if v.discovery is not None]
        return TruthScore(recalled_pairs / pairs if pairs else 1.0, len(distractors), tuple(verdicts),
                          sum(judged) / len(judged) if judged else None)

    def _list(self, notes: str):
        try:
            return self.form.parse(notes)
        except RuleError:
            return None

    def _score_list(self, rules) -> TruthScore:
        tested = {a for line in rules.lines for a, _ in line.conditions}
        others = sorted(tested - set(self.relevant))
        verdicts, pairs, recalled_pairs = [], 0, 0
        for name in self.classes:
            rows = [row for row in self.table if row["class"] == name]
            right = total = 0
            for row in rows:
                for values in itertools.product(*(self.form.values[a] for a in others)):
                    right += rules.apply({**row["when"], **dict(zip(others, values, strict=True))}) == name
                    total += 1
            correctness = right / total if total else 0.0
            deciding = self.deciding[name]
            recalled = deciding if total and right == total else ()
            named = any(line.label == name for line in rules.lines) or rules.default == name
            verdicts.append(ClassVerdict(name, named, recalled, deciding if named and right == 0 else (),
                                         tuple(a for a in deciding if a not in recalled), tuple(others),
                                         correctness if deciding else None))
            pairs += len(deciding)
            recalled_pairs += len(recalled)
        judged = [v.discovery for v in verdicts if v.discovery is not None]
        return TruthScore(recalled_pairs / pairs if pairs else 1.0, len(others), tuple(verdicts),
                          sum(judged) / len(judged) if judged else None)

    def _discovery(self, name: str, cited: dict[str, set[str]]) -> float | None:
        """found x correctness of one class's rule, as the module docstring defines them."""
        deciding = self.deciding[name]
        if not deciding:
            return None
        if not any(cited.get(a) for a in deciding):
            return 0.0  # not found
        return sum(len(cited[a] & self.allowed[name][a]) / len(cited[a]) for a in deciding if cited.get(a)) \
            / len(deciding)

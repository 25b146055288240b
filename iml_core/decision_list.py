"""Notes a program can apply: a decision list over a task's attributes, values and classes.

    IF colour = red AND tail = long THEN Florp
    IF colour = red THEN Zindle
    ELSE Quarrow

The first line whose conditions all hold names the class; ELSE names it when none does. The list is
the notes themselves (text, so the Notes diff, truth scoring and the report read it as any notes),
parsed here against the task, never executed: a line that is not of this form, an attribute, value
or class the task does not have, is an error naming the line and the word at fault. The same form
is written as a llama.cpp grammar (GBNF) from the task, so that a model run here can write nothing
else (issue 35).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from iml_core.errors import UserError
from iml_core.grammar import gbnf_literal
from iml_core.tasks import Attribute

# Far more than a readable list needs, small enough that a hostile input is refused at once.
MAX_CHARACTERS = 20_000
MAX_LINES = 64
MAX_CONDITIONS = 8
KEYWORDS = ("IF", "AND", "THEN", "ELSE")
# What a condition costs a list, in examples it must sort right to earn its place. With none, a list
# fitted to 32 samples with a tenth of the labels wrong grows a line per wrong label (rung 3: 7
# lines, 55-80% held out). Swept over 0.25-2 on the ladder rungs and the presets, rule seeds 1-3
# (docs/learning.md): 0.25-0.75 fitted the same rules, 1 and more dropped true conditions.
CONDITION_COST = 0.5
# The most attributes a fitted list reads: every generated task here decides by at most three.
FIT_ATTRIBUTES = 3


def worth(right: int, conditions: int) -> float:
    """What a list is ranked by: the examples it sorts right, less CONDITION_COST per condition."""
    return right - CONDITION_COST * conditions


class RuleError(UserError):
    """Text that is not a decision list over the task: names the line and the word at fault."""


@dataclass(frozen=True)
class Line:
    conditions: tuple[tuple[str, str], ...]  # (attribute, value), all of which must hold
    label: str

    def holds(self, features: Mapping[str, str]) -> bool:
        return all(features.get(attribute) == value for attribute, value in self.conditions)

    def __str__(self) -> str:
        return "IF " + " AND ".join(f"{a} = {v}" for a, v in self.conditions) + f" THEN {self.label}"


@dataclass(frozen=True)
class DecisionList:
    lines: tuple[Line, ...]
    default: str

    def apply(self, features: Mapping[str, str]) -> str:
        for line in self.lines:
            if line.holds(features):
                return line.label
        return self.default

    def deciding(self, features: Mapping[str, str]) -> int:
        """The line (from 1) that names the class of `features`; len(lines) + 1 for ELSE."""
        for number, line in enumerate(self.lines, start=1):
            if line.holds(features):
                return number
        return len(self.lines) + 1

    @property
    def conditions(self) -> int:
        return sum(len(line.conditions) for line in self.lines)

    def worth(self, examples: Sequence[tuple[Mapping[str, str], str]]) -> float:
        return worth(sum(self.apply(features) == label for features, label in examples), self.conditions)

    def __str__(self) -> str:
        return "\n".join([*(str(line) for line in self.lines), f"ELSE {self.default}"])


class RuleForm:
    """The decision lists of one task: parsing, and the grammar a model writes them under."""

    def __init__(self, attributes: Sequence[Attribute], classes: Sequence[str]):
        self.values = {a.name: tuple(a.values) for a in attributes}
        self.classes = tuple(classes)
        # Longest first, so that "eye count" is not read as "eye".
        self._attributes = sorted(self.values, key=len, reverse=True)

    # --- reading ----------------------------------------------------------------------------

    def parse(self, text: str) -> DecisionList:
        if not isinstance(text, str):
            raise RuleError(f"a decision list is text, got {type(text).__name__}")
        if len(text) > MAX_CHARACTERS:
            raise RuleError(f"the decision list is {len(text):,} characters long, over the {MAX_CHARACTERS:,} "
                            "allowed; a list is a few IF ... THEN lines and an ELSE line")
        numbered = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if not numbered:
            raise RuleError("the decision list is empty; write IF attribute = value THEN class lines and a last "
                            f"line ELSE class (classes: {', '.join(self.classes)})")
        if len(numbered) > MAX_LINES:
            raise RuleError(f"the decision list has {len(numbered)} lines, over the {MAX_LINES} allowed")
        lines = []
        for position, (number, line) in enumerate(numbered):
            last = position == len(numbered) - 1
            word = _first_word(line)
            if word.upper() == "ELSE":
                if not last:
                    raise RuleError(f"line {number}: ELSE must be the last line; the lines after it would never "
                                    "be read")
                return DecisionList(tuple(lines), self._label(line[len(word):].strip(), number))
            if word.upper() != "IF":
                raise RuleError(f"line {number}: {_shown(word)} where IF or ELSE must begin the line "
                                "(IF attribute = value [AND attribute = value ...] THEN class, or ELSE class)")
            lines.append(self._line(line[len(word):], number))
        raise RuleError(f"line {numbered[-1][0]}: the list has no ELSE line; end it with ELSE class "
                        f"(classes: {', '.join(self.classes)})")

    def _line(self, rest: str, number: int) -> Line:
        body, separator, label = _split_keyword(rest, "THEN")
        if not separator:
            raise RuleError(f"line {number}: no THEN; write IF attribute = value THEN class")
        parts = _split_all(body, "AND")
        if len(parts) > MAX_CONDITIONS:
            raise RuleError(f"line {number}: {len(parts)} conditions, over the {MAX_CONDITIONS} allowed")
        # An attribute tested twice is allowed, as the grammar allows it: the line holds when both do.
        conditions = tuple(self._condition(part.strip(), number) for part in parts)
        return Line(conditions, self._label(label.strip(), number))

    def _condition(self, text: str, number: int) -> tuple[str, str]:
        name, equals, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not name:
            raise RuleError(f"line {number}: {_shown(text)} is no condition; write attribute = value "
                            f"(attributes: {', '.join(self.values)})")
        if name not in self.values:
            raise RuleError(f"line {number}: {_shown(name)} is not an attribute of this task "
                            f"(attributes: {', '.join(self.values)})")
        if value not in self.values[name]:
            raise RuleError(f"line {number}: {_shown(value)} is not a value of {name} "
                            f"(values: {', '.join(self.values[name])})")
        return name, value

    def _label(self, text: str, number: int) -> str:
        if text not in self.classes:
            raise RuleError(f"line {number}: {_shown(text) if text else 'nothing'} where a class must be "
                            f"(classes: {', '.join(self.classes)})")
        return text

    def is_list(self, text: str) -> bool:
        try:
            self.parse(text)
        except RuleError:
            return False
        return True

    # --- writing ----------------------------------------------------------------------------

    def grammar(self, max_lines: int = 8) -> str:
        """GBNF for a decision list of this task, of at most `max_lines` IF lines: the model writes
        only attributes, values and classes the task has. Each word carries the space before it
        (" colour", " red"), as a model's tokens do: a grammar that put the space at the end of
        "IF " would leave the model only its rare space-less tokens for the word after it."""
        classes = " | ".join(gbnf_literal(" " + c) for c in self.classes)
        return "\n".join([
            f'root ::= {" ".join(["line?"] * max_lines)} "ELSE" class',
            'line ::= "IF" condition (" AND" condition)? (" AND" condition)? " THEN" class "\\n"',
            f"condition ::= {self._conditions(' ')}",
            f"class ::= {classes}",
        ])

    def conditions_grammar(self, most: int = 2) -> str:
        """GBNF for one line's conditions alone ("colour = red AND tail = long"), at most `most`: what
        a model is asked for when it writes a list a line at a time. The answer's first word has no
        space before it."""
        more = " ".join(['(" AND" condition)?'] * (most - 1))
        return f"root ::= first {more}\nfirst ::= {self._conditions('')}\ncondition ::= {self._conditions(' ')}"

    def _conditions(self, space: str) -> str:
        return " | ".join(f"{gbnf_literal(space + name + ' =')} ({' | '.join(gbnf_literal(' ' + v) for v in values)})"
                          for name, values in self.values.items())

    def split(self, examples: Sequence[tuple[Mapping[str, str], str]], name: str) -> str:
        """How each class's examples split on one attribute: "Florp: red 9 of 9", "Zindle: red 5, blue 4 of 9"."""
        lines = []
        for label in self.classes:
            mine = [features.get(name) for features, of in examples if of == label]
            if mine:
                counts = sorted(((mine.count(v), v) for v in self.values[name] if v in mine), reverse=True)
                lines.append(f"{label}: " + ", ".join(f"{v} {k}" for k, v in counts) + f" of {len(mine)}")
        return "\n".join(lines)

    def evidence(self, examples: Sequence[tuple[Mapping[str, str], str]], order: Sequence[str] = ()) -> str:
        """Labelled examples as a small model can read them: per class (in `order`, else the task's),
        how many had each value, the values most of the class share first ("colour = red (9 of 9)"),
        those of under half left out."""
        lines = []
        for label in order or self.classes:
            mine = [features for features, of in examples if of == label]
            if not mine:
                continue
            counts = [(sum(f.get(name) == value for f in mine), name, value)
                      for name, values in self.values.items() for value in values]
            shown = sorted((c for c in counts if 2 * c[0] >= len(mine)), key=lambda c: -c[0])
            lines.append(f"{label} ({len(mine)} {'sample' if len(mine) == 1 else 'samples'}): "
                         + ", ".join(f"{name} = {value} ({k} of {len(mine)})" for k, name, value in shown))
        return "\n".join(lines)

    def aligned(self, features: Mapping[str, str]) -> str:
        """A sample as the rules read it: attribute = value, in the task's order."""
        return ", ".join(f"{name} = {features[name]}" for name in self.values if name in features)


def _first_word(line: str) -> str:
    return line.split(maxsplit=1)[0] if line.split() else ""


def _shown(text: str) -> str:
    """A word at fault, quoted and cut short: hostile text is named, never echoed whole."""
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def _split_keyword(text: str, keyword: str) -> tuple[str, str, str]:
    """text split at the last ` KEYWORD ` (any case), as str.rpartition."""
    lowered = text.upper()
    at = lowered.rfind(f" {keyword} ")
    if at < 0:
        return text, "", ""
    return text[:at], keyword, text[at + len(keyword) + 2:]


def _split_all(text: str, keyword: str) -> list[str]:
    parts, rest = [], text
    while True:
        at = rest.upper().find(f" {keyword} ")
        if at < 0:
            return parts + [rest]
        parts.append(rest[:at])
        rest = rest[at + len(keyword) + 2:]


def fit(examples: Sequence[tuple[Mapping[str, str], str]], form: RuleForm, *, max_conditions: int = 2,
        max_lines: int = 8, min_cover: int = 2) -> DecisionList:
    """A decision list fitted to labelled examples by sequential covering: each line is the
    conjunction of at most `max_conditions` conditions whose examples left are all of one class,
    covering the most of them (fewer conditions on a tie); the class most of the rest have is ELSE.
    The offline learner's way of writing rule notes, with no model."""
    from collections import Counter
    from itertools import combinations

    remaining = list(examples)
    lines: list[Line] = []
    while remaining and len(lines) < max_lines and len({label for _, label in remaining}) > 1:
        seen = sorted({(a, v) for features, _ in remaining for a, v in features.items() if a in form.values})
        best: tuple | None = None
        for size in range(1, max_conditions + 1):
            for conditions in combinations(seen, size):
                if len({a for a, _ in conditions}) < size:
                    continue  # one attribute tested twice
                covered = [label for features, label in remaining
                           if all(features.get(a) == v for a, v in conditions)]
                if len(covered) < min_cover or len(set(covered)) > 1:
                    continue
                key = (len(covered), -size)
                if best is None or key > best[0]:
                    best = (key, conditions, covered[0])
        if best is None:
            break
        _, conditions, label = best
        lines.append(Line(tuple(conditions), label))
        remaining = [(f, label) for f, label in remaining if not all(f.get(a) == v for a, v in conditions)]
    left = Counter(label for _, label in (remaining or examples))
    default = left.most_common(1)[0][0] if left else form.classes[0]
    return DecisionList(tuple(lines), default)


def simplest_fits(examples: Sequence[tuple[Mapping[str, str], str]], form: RuleForm, *, count: int = 1,
                  most_attributes: int = FIT_ATTRIBUTES) -> list[DecisionList]:
    """The `count` lists worth most on `examples` (sorted right, less CONDITION_COST per condition),
    best first, each over one subset of at most `most_attributes` of the attributes the examples
    have. Per subset, every combination of its values seen takes the class most of its examples
    have, which outvotes a wrong label among right ones; `fit` then writes that table as a short
    list. A subset is fitted only while the least it could cost (its table's errors, and a condition
    per class but one) can still make the `count` best."""
    from collections import Counter, defaultdict
    from itertools import combinations

    names = [name for name in form.values if any(name in features for features, _ in examples)]
    bounds = []
    for size in range(min(most_attributes, len(names)) + 1):
        for subset in combinations(names, size):
            cells: dict[tuple, Counter] = defaultdict(Counter)
            for features, label in examples:
                cells[tuple(features.get(name) for name in subset)][label] += 1
            majority = {cell: labels.most_common(1)[0][0] for cell, labels in cells.items()}
            errors = sum(sum(labels.values()) - labels[majority[cell]] for cell, labels in cells.items())
            bounds.append((errors + CONDITION_COST * (len(set(majority.values())) - 1), size, subset, majority))
    bounds.sort(key=lambda b: (b[0], b[1]))
    best: list[tuple[float, int, DecisionList]] = []
    for bound, size, subset, majority in bounds:
        if len(best) >= count and bound > best[-1][0]:
            break
        table = [({name: features.get(name) for name in subset},
                  majority[tuple(features.get(name) for name in subset)]) for features, _ in examples]
        rules = fit(table, form, max_conditions=max(size, 1), min_cover=1)
        if any(str(rules) == str(other) for _, _, other in best):
            continue
        best.append((len(examples) - rules.worth(examples), rules.conditions, rules))  # its cost
        best.sort(key=lambda b: (b[0], b[1]))
        del best[count:]
    return [rules for _, _, rules in best]


def rule_card_list(task) -> str:
    """A task's rule card as a decision list: one line per truth-table row, the last row's class as
    ELSE (its line would be read only when no other holds, which is ELSE's job)."""
    rows = task.rule_card["table"]
    lines = [Line(tuple(row["when"].items()), row["class"]) for row in rows[:-1]]
    return str(DecisionList(tuple(lines), rows[-1]["class"]))

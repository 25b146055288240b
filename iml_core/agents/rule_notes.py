"""The offline learner's notes as a language: one line per class naming its typical traits with
their shares ("- Florp: wing type is feathered (100%), diet is plants (90%)."), and its batch notes,
which count each class's traits ("wing type is feathered (7 of 8)"). RuleNotes reads and writes
both; the learner (offline.py) decides what they should say."""

from __future__ import annotations

import math
import re
from typing import Sequence

from iml_core.attribution import note_units
from iml_core.tasks import Attribute

# The notes name a trait when its share beats an even split of its attribute by this many points.
LISTED_MARGIN = 10
SMOOTHING = 0.05  # a trait the notes rule out still gets this much weight, so one miss is not fatal
NO_TRAIT = "no typical trait yet."
Rule = dict[str, dict[str, int]]  # attribute -> value -> percent of the class's examples
Counts = dict[str, dict[str, int]]  # attribute -> value -> examples with it


def percent(share: float) -> int:
    return int(math.floor(share * 100 + 0.5))


class RuleNotes:
    """Reads and writes the notes of a task's attributes and classes."""

    def __init__(self, attributes: Sequence[Attribute], classes: Sequence[str]):
        self.attributes = tuple(attributes)
        self.classes = tuple(classes)
        self._values = {a.name: a.values for a in self.attributes}
        # Longest first, so "red-brown" is not read as "red".
        traits = sorted(((a.name, v) for a in self.attributes for v in a.values),
                        key=lambda t: -len(f"{t[0]} is {t[1]}"))
        self._trait_lookup = {f"{a} is {v}": (a, v) for a, v in traits}
        alternatives = "|".join(re.escape(phrase) for phrase in self._trait_lookup)
        self._share_pattern = re.compile(rf"({alternatives}) \((\d{{1,3}})%\)")
        self._count_pattern = re.compile(rf"({alternatives}) \((\d+) of (\d+)\)")
        self._classes_longest_first = sorted(self.classes, key=len, reverse=True)

    def _class_of_line(self, line: str) -> tuple[str, str] | None:
        """The class a notes line is about and the rest of the line, if it is one of ours."""
        body = line.strip()
        if not body.startswith("- "):
            return None
        body = body[2:]
        for name in self._classes_longest_first:
            if body.startswith(name + ":") or body.startswith(name + ","):
                return name, body[len(name) + 1:]
        return None

    def _class_lines(self, text: str):
        """(class, rest of the line) for every line of `text` about one of the classes."""
        for line in text.splitlines():
            parsed = self._class_of_line(line)
            if parsed is not None:
                yield parsed

    def parse_notes(self, notes: str) -> dict[str, Rule]:
        rules: dict[str, Rule] = {}
        for name, rest in self._class_lines(notes):
            mentioned: Rule = {}
            for match in self._share_pattern.finditer(rest):
                attribute, value = self._trait_lookup[match.group(1)]
                mentioned.setdefault(attribute, {})[value] = min(100, int(match.group(2)))
            # A later line about a class corrects the attributes it mentions; one that names no
            # trait says the class has none yet.
            rules[name] = {} if rest.strip() == NO_TRAIT else {**rules.get(name, {}), **mentioned}
        return rules

    def _distribution(self, attribute: str, listed: dict[str, float]) -> dict[str, float]:
        """Shares of every value of an attribute: the listed ones as written, the rest of the mass
        spread evenly over the values the notes do not name."""
        values = self._values[attribute]
        total = sum(listed.values())
        if total > 1:
            return {v: listed.get(v, 0.0) / total for v in values}
        unnamed = [v for v in values if v not in listed]
        rest = (1 - total) / len(unnamed) if unnamed else 0.0
        return {v: listed.get(v, rest) for v in values}

    def _units_by_class(self, notes: str) -> dict[str, list[tuple[int, list[tuple[str, str]]]]]:
        """Class -> (unit number, the traits the unit states) for every notes unit about it."""
        found: dict[str, list[tuple[int, list[tuple[str, str]]]]] = {}
        for number, unit in enumerate(note_units(notes), start=1):
            parsed = self._class_of_line(unit)
            if parsed is not None:
                traits = [self._trait_lookup[m.group(1)] for m in self._share_pattern.finditer(parsed[1])]
                found.setdefault(parsed[0], []).append((number, traits))
        return found

    def _parse_batch_note(self, text: str) -> dict[str, tuple[int, Counts]]:
        evidence: dict[str, tuple[int, Counts]] = {}
        for name, rest in self._class_lines(text):
            counts: Counts = {}
            total = 0
            for match in self._count_pattern.finditer(rest):
                attribute, value = self._trait_lookup[match.group(1)]
                counts.setdefault(attribute, {})[value] = int(match.group(2))
                total = max(total, int(match.group(3)))
            if total:
                evidence[name] = (total, counts)
        return evidence

    def _shares(self, rule: Rule | None, attribute: str) -> dict[str, float]:
        return self._distribution(attribute, {v: s / 100 for v, s in (rule or {}).get(attribute, {}).items()})

    def _listed(self, rule: Rule | None, attribute: str) -> dict[str, int]:
        bar = 100 / len(self._values[attribute]) + LISTED_MARGIN
        return {v: round(s * 100) for v, s in self._shares(rule, attribute).items() if s * 100 >= bar}

    def render_line(self, name: str, rule: Rule, attributes: Sequence[str] | None = None) -> str:
        """The line for a class naming its typical traits, most typical first. Given `attributes`,
        a correction of just those, which states a share below the bar when none is typical."""
        traits = []
        for position, attribute in enumerate(attributes or [a.name for a in self.attributes]):
            typical = self._listed(rule, attribute)
            if not typical and attributes:
                shares = self._shares(rule, attribute)
                top = max(shares, key=shares.get)
                typical = {top: round(shares[top] * 100)}
            traits += [(share, position, attribute, value) for value, share in typical.items()]
        if not traits:
            return f"- {name}: {NO_TRAIT}"
        traits.sort(key=lambda t: (-t[0], t[1]))
        return f"- {name}: " + ", ".join(f"{a} is {v} ({s}%)" for s, _, a, v in traits) + "."

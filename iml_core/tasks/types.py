"""The task's types: an attribute, a sample and what an agent sees of it, a task; and how samples
and rules read as sentences, which every kind of task shares."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attribute:
    name: str
    values: tuple[str, ...]
    # How each value reads in a sentence ("has feathered wings"); CSV attributes have none.
    phrases: tuple[str, ...] = ()

    def phrase(self, value: str) -> str:
        if self.phrases:
            return self.phrases[self.values.index(value)]
        return f"{self.name} is {value if value else '(blank)'}"


@dataclass(frozen=True)
class Observation:
    """What an agent sees of a sample: never its label."""
    id: int
    features: dict[str, str]
    text: str


@dataclass(frozen=True)
class Sample:
    id: int
    features: dict[str, str]
    text: str
    label: str

    @property
    def observation(self) -> Observation:
        return Observation(self.id, self.features, self.text)


@dataclass(frozen=True)
class Task:
    name: str
    noun: str
    attributes: tuple[Attribute, ...]
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    rule_card: dict | None
    # What identifies the data exactly (preset, seed, noise; or the CSV's sha256), stored with runs.
    source: dict = field(default_factory=dict)
    # How a sentence gives a sample's class ("is a Florp"), for rule cards written as notes.
    class_phrase: str = "is a {}"


def attribute(name: str, *pairs: tuple[str, str]) -> Attribute:
    """An attribute from (value, how it reads) pairs."""
    return Attribute(name, tuple(v for v, _ in pairs), tuple(p for _, p in pairs))


def listed(phrases: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def sample_sentence(opening: str, attributes: tuple[Attribute, ...], features: dict[str, str]) -> str:
    """How a sample reads, for benchmark creatures and CSV rows alike: "OPENING a, b and c."."""
    return f"{opening} {listed([a.phrase(features[a.name]) for a in attributes])}."


def rule_sentence(task: Task, when: dict[str, str], label: str) -> str:
    """One truth-table row in words: "A creature that is red and has a long tail is a Florp." """
    attributes = {a.name: a for a in task.attributes}
    phrases = listed([attributes[a].phrase(v) for a, v in when.items()])
    return f"{article(task.noun).capitalize()} {task.noun} that {phrases} {task.class_phrase.format(label)}."


def table_rows(relevant: list[Attribute], table: dict) -> list[dict]:
    """A truth table (combination of the relevant values -> class) as a rule card writes it."""
    names = [a.name for a in relevant]
    return [{"when": dict(zip(names, combo, strict=True)), "class": label} for combo, label in table.items()]


def card_body(classes, attributes: tuple[Attribute, ...], relevant: list[Attribute], table: dict) -> dict:
    """The part of a rule card every generated task shares, in the order the shipped files have it."""
    return {"classes": list(classes), "attributes": {a.name: list(a.values) for a in attributes},
            "relevant": [a.name for a in relevant], "table": table_rows(relevant, table)}

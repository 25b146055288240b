"""A generated task's spec, `rules:classes=3,relevant=2,...`: its knobs, their ranges, and the
canonical spec that names the task."""

from __future__ import annotations

from dataclasses import dataclass

from iml_core.errors import UserError
from iml_core.tasks.domains import DOMAINS

FORMS = {
    "table": "a truth table: every combination of the relevant values has its class",
    "list": "a decision list: if-then rules tried in order, and a default class",
    "count": "a count: how many relevant attributes have their marked value, cut into ranges, one class each",
}


@dataclass(frozen=True)
class Knob:
    name: str
    default: int | float | str
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def allowed(self) -> str:
        if self.choices:
            return f"{', '.join(self.choices[:-1])} or {self.choices[-1]}"
        return f"from {number_text(self.low)} to {number_text(self.high)}"

    def parse(self, raw: str, spec: str):
        fix = f"write one, e.g. {self.name}={number_text(self.default)}"
        if self.choices:
            if raw.lower() not in self.choices:
                raise UserError(f"{self.name}={raw} in the task spec {spec!r}: {self.name} is {self.allowed}; "
                                f"{fix}")
            return raw.lower()
        try:
            value = int(raw) if isinstance(self.default, int) else float(raw)
        except ValueError:
            kind = "a whole number" if isinstance(self.default, int) else "a number"
            raise UserError(f"{self.name}={raw} in the task spec {spec!r} is not {kind}: {self.name} is "
                            f"{self.allowed}; {fix}") from None
        if not self.low <= value <= self.high:  # NaN fails this too
            raise UserError(f"{self.name}={raw} in the task spec {spec!r} is out of range: {self.name} is "
                            f"{self.allowed}; {fix}")
        return value


def number_text(value) -> str:
    """A knob's value as the canonical spec writes it: 0.1, not 0.10000; 0, not 0.0."""
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


RULES_PREFIX = "rules:"
# In the order the canonical spec writes them.
RULE_KNOBS: dict[str, Knob] = {k.name: k for k in (
    Knob("classes", 2, "how many classes", 2, 8),
    Knob("attributes", 4, "attributes per sample, the relevant ones included", 1, 20),
    Knob("values", 2, "values per attribute", 2, 5),
    Knob("relevant", 1, "attributes the class depends on (the rule's depth); the others are distractors", 1, 4),
    Knob("form", "table", "how the rule is made: " + "; ".join(f"{k}: {v}" for k, v in FORMS.items()),
         choices=tuple(FORMS)),
    Knob("noise", 0.0, "share of the labels replaced by a wrong class", 0.0, 0.95),
    Knob("domain", "creatures", "the words: " + "; ".join(f"{k}: {d.description}" for k, d in DOMAINS.items()),
         choices=tuple(DOMAINS)),
    Knob("samples", 1000, "how many samples", 20, 100_000),
    Knob("seed", 0, "draws the rule and the samples", 0, 2**31 - 1),
)}
# What the rule and the features are drawn from. Not the noise (a noisier task keeps its rule and
# features), the sample count (more samples extend the same sequence) or the domain (the same rule in
# other words).
STRUCTURE_KNOBS = ("classes", "attributes", "values", "relevant", "form", "seed")


def is_rules_spec(spec: str) -> bool:
    return spec.strip() == "rules" or spec.strip().startswith(RULES_PREFIX)


def rules_spec(knobs: dict) -> str:
    """The canonical spec of a generated task: every knob, in RULE_KNOBS' order. Equal specs name
    the same task, so this is the task's name."""
    return RULES_PREFIX + ",".join(f"{name}={number_text(knobs[name])}" for name in RULE_KNOBS)


def parse_rules_spec(spec: str, label_noise: float | None = None) -> dict:
    """Every knob of a `rules:knob=value,...` spec, defaults filled in; UserError naming a bad knob,
    its range and the fix. `label_noise` (a run's setting) is the noise knob when the spec gives none."""
    body = spec.strip()[len("rules"):].removeprefix(":")
    given: dict = {}
    for item in (part.strip() for part in body.split(",")):
        if not item:
            continue
        name, equals, raw = item.partition("=")
        name, raw = name.strip().lower(), raw.strip()
        if not equals or not raw:
            raise UserError(f"{item!r} in the task spec {spec!r} is not knob=value; write it as e.g. classes=3")
        if name not in RULE_KNOBS:
            raise UserError(f"unknown knob {name!r} in the task spec {spec!r}; the knobs are "
                            f"{', '.join(RULE_KNOBS)}")
        if name in given:
            raise UserError(f"the knob {name!r} is given twice in the task spec {spec!r}; give it once")
        given[name] = RULE_KNOBS[name].parse(raw, spec)
    if label_noise is not None:
        if "noise" in given and given["noise"] != label_noise:
            raise UserError(f"the task spec {spec!r} sets noise={number_text(given['noise'])} and the label noise "
                            f"setting is {label_noise}: give the noise once, in the spec or as the setting")
        given["noise"] = RULE_KNOBS["noise"].parse(str(label_noise), spec)
    knobs = {name: given.get(name, knob.default) for name, knob in RULE_KNOBS.items()}
    classes, relevant, values = knobs["classes"], knobs["relevant"], knobs["values"]
    if relevant > knobs["attributes"]:
        raise UserError(f"relevant={relevant} is more than attributes={knobs['attributes']} in the task spec "
                        f"{spec!r}: the class can depend on at most every attribute; raise attributes or lower "
                        "relevant")
    if knobs["form"] == "count" and classes > relevant + 1:
        most = RULE_KNOBS["relevant"].high
        raise UserError(f"form=count with relevant={relevant} counts 0 to {relevant} marked values, so it tells "
                        f"at most {relevant + 1} classes apart, not classes={classes}; lower classes to {relevant + 1}"
                        + (f" or raise relevant to {classes - 1}" if classes - 1 <= most else ""))
    if values ** relevant < classes:
        raise UserError(f"classes={classes} needs at least {classes} combinations of the relevant attributes' values, "
                        f"but relevant={relevant} with values={values} gives {values ** relevant}; lower classes or "
                        "raise relevant or values")
    return knobs

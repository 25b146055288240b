"""Tasks: the creature benchmark of the IML paper, its harder variants, tasks generated from a
spec with knobs (`rules:classes=3,relevant=2,...`), and a user's own CSV.

A task is a list of samples, each an observation (attribute values rendered as one English
sentence) and a label. Benchmark and generated tasks keep their rule card: which attributes decide
the class and the truth table, so notes can later be scored against the truth; a CSV gets one from
a `NAME.rules.json` beside it.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from iml_core.errors import UserError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
TASKS_DIR = DATA_DIR / "tasks"  # CSV tasks saved from the dashboard
BENCHMARK_SEED = 0  # the seed of the files shipped in data/


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


# --- the creature benchmark -------------------------------------------------------------

def _binary(name: str, a: str, b: str, phrase_a: str, phrase_b: str) -> Attribute:
    return Attribute(name, (a, b), (phrase_a, phrase_b))


CREATURE_ATTRIBUTES = (
    _binary("wing type", "feathered", "leathery", "has feathered wings", "has leathery wings"),
    _binary("diet", "plants", "meat", "eats plants", "eats meat"),
    _binary("habitat", "forest", "desert", "lives in the forest", "lives in the desert"),
    _binary("size", "small", "large", "is small", "is large"),
    _binary("colour", "red", "blue", "is red", "is blue"),
    _binary("skin", "scales", "fur", "is covered in scales", "is covered in fur"),
    _binary("active time", "day", "night", "is active by day", "is active at night"),
    _binary("eye count", "two", "four", "has two eyes", "has four eyes"),
    _binary("tail", "long", "short", "has a long tail", "has a short tail"),
    _binary("call", "song", "hiss", "sings", "hisses"),
)

# The harder preset swaps some two-valued attributes for many-valued ones.
MULTI_VALUED_ATTRIBUTES = (
    Attribute("habitat", ("forest", "desert", "sea", "mountains"),
              ("lives in the forest", "lives in the desert", "lives in the sea", "lives in the mountains")),
    Attribute("size", ("small", "medium", "large"), ("is small", "is medium-sized", "is large")),
    Attribute("colour", ("red", "blue", "green", "yellow"), ("is red", "is blue", "is green", "is yellow")),
    Attribute("horns", ("none", "one", "two"), ("has no horns", "has one horn", "has two horns")),
    Attribute("legs", ("two", "four", "six"), ("walks on two legs", "walks on four legs", "walks on six legs")),
)

SPECIES = ("Florp", "Zindle", "Quarrow", "Brimlet")


@dataclass(frozen=True)
class Preset:
    description: str
    attributes: tuple[Attribute, ...]
    relevant_count: int
    samples: int
    label_noise: float = 0.0
    # A preset that is another one plus noise names it: it takes that one's rule and features.
    base: str | None = None


def _hard_attributes() -> tuple[Attribute, ...]:
    replaced = {a.name: a for a in MULTI_VALUED_ATTRIBUTES}
    kept = tuple(replaced.get(a.name, a) for a in CREATURE_ATTRIBUTES)
    return kept + tuple(a for a in MULTI_VALUED_ATTRIBUTES if a.name not in {k.name for k in kept})


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "The IML paper's benchmark: 10 two-valued attributes, 4 species given by a truth table "
        "over 2 of them; the other 8 are distractors.",
        CREATURE_ATTRIBUTES, relevant_count=2, samples=3200),
    "noisy": Preset(
        "The paper benchmark with 10% of the labels replaced by a wrong species.",
        CREATURE_ATTRIBUTES, relevant_count=2, samples=3200, label_noise=0.1, base="paper"),
    "hard": Preset(
        "12 attributes, several with 3 or 4 values; the species depends on 3 of them through an "
        "xor-like truth table.",
        _hard_attributes(), relevant_count=3, samples=3200),
}


def _truth_table(rng: random.Random, relevant: list[Attribute], classes: tuple[str, ...]) -> dict:
    """A table from every combination of the relevant values to a class in which every class
    occurs and every relevant attribute matters (none can be dropped without losing the class)."""
    combos = list(itertools.product(*(a.values for a in relevant)))
    if len(combos) == len(classes):
        return dict(zip(combos, rng.sample(classes, len(classes)), strict=False))
    while True:
        table = {combo: rng.choice(classes) for combo in combos}
        if set(table.values()) != set(classes):
            continue
        if all(_attribute_matters(table, i) for i in range(len(relevant))):
            return table


def _attribute_matters(table: dict, index: int) -> bool:
    seen: dict[tuple, str] = {}
    for combo, label in table.items():
        rest = combo[:index] + combo[index + 1:]
        if seen.setdefault(rest, label) != label:
            return True
    return False


def sample_sentence(opening: str, attributes: tuple[Attribute, ...], features: dict[str, str]) -> str:
    """How a sample reads, for benchmark creatures and CSV rows alike: "OPENING a, b and c."."""
    phrases = [a.phrase(features[a.name]) for a in attributes]
    listed = phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"
    return f"{opening} {listed}."


@functools.lru_cache(maxsize=16)
def generate_benchmark(preset: str, seed: int = BENCHMARK_SEED, label_noise: float | None = None) -> Task:
    """Generates a preset; the same (preset, seed, label_noise) gives the same task, byte for byte.
    Cached: tasks are read, never changed, and every run and check of a preset needs one."""
    if preset not in PRESETS:
        raise UserError(f"unknown task preset {preset!r}; choose one of {', '.join(PRESETS)} or give a CSV path")
    noise = PRESETS[preset].label_noise if label_noise is None else label_noise
    if not 0.0 <= noise < 1.0:
        raise UserError(f"label noise must be at least 0 and below 1, got {noise}")
    # The rule and the features come from the base preset's stream alone, so that noise changes labels
    # and nothing else: `noisy` is `paper` with 10% of its labels replaced, sample for sample.
    base = PRESETS[preset].base or preset
    spec = PRESETS[base]
    rng = random.Random(f"iml-benchmark/{base}/{seed}")
    # Which wrong class a replaced label gets is drawn apart: drawing it from `rng` would shift every
    # later sample's features (the shipped paper and hard data draw one number per sample, kept).
    wrong_rng = random.Random(f"iml-benchmark/{base}/{seed}/wrong-label")
    relevant = sorted(rng.sample(range(len(spec.attributes)), spec.relevant_count))
    relevant_attrs = [spec.attributes[i] for i in relevant]
    table = _truth_table(rng, relevant_attrs, SPECIES)

    samples = []
    for sample_id in range(spec.samples):
        features = {a.name: rng.choice(a.values) for a in spec.attributes}
        label = table[tuple(features[a.name] for a in relevant_attrs)]
        if rng.random() < noise:
            label = wrong_rng.choice([c for c in SPECIES if c != label])
        samples.append(Sample(sample_id, features, sample_sentence("This creature", spec.attributes, features), label))

    rule_card = {
        "task": preset,
        "description": PRESETS[preset].description,
        **({"base": base} if base != preset else {}),
        "seed": seed,
        "samples": spec.samples,
        "label_noise": noise,
        "classes": list(SPECIES),
        "attributes": {a.name: list(a.values) for a in spec.attributes},
        "relevant": [a.name for a in relevant_attrs],
        "table": [
            {"when": dict(zip([a.name for a in relevant_attrs], combo, strict=True)), "class": label}
            for combo, label in table.items()
        ],
    }
    return Task(
        name=preset,
        noun="creature",
        attributes=spec.attributes,
        classes=SPECIES,
        samples=tuple(samples),
        rule_card=rule_card,
        # "wrong labels drawn apart": runs made before that drew them from the feature stream, so
        # their noisy samples differ from these, and their stored source says so by lacking it.
        source={"preset": preset, "seed": seed, "label_noise": noise,
                **({"base": base} if base != preset else {}), **({"wrong_labels": "apart"} if noise else {})},
    )


# --- generated tasks: a rule with knobs ---------------------------------------------------

@dataclass(frozen=True)
class Domain:
    """The words a generated task is written in; the rule's shape does not depend on them."""
    description: str
    noun: str
    attributes: tuple[Attribute, ...]  # 20 of them, with 5 values each: the most the knobs ask for
    classes: tuple[str, ...]  # 8: the most the knobs ask for
    class_phrase: str  # how a sentence gives a class


def _attribute(name: str, *pairs: tuple[str, str]) -> Attribute:
    return Attribute(name, tuple(v for v, _ in pairs), tuple(p for _, p in pairs))


# The first ten attributes, with their first two values, are the paper's: a generated task with
# two-valued attributes reads like the benchmark.
CREATURE_POOL = (
    _attribute("wing type", ("feathered", "has feathered wings"), ("leathery", "has leathery wings"),
               ("glassy", "has glassy wings"), ("ragged", "has ragged wings"), ("folded", "has folded wings")),
    _attribute("diet", ("plants", "eats plants"), ("meat", "eats meat"), ("insects", "eats insects"),
               ("fish", "eats fish"), ("fruit", "eats fruit")),
    _attribute("habitat", ("forest", "lives in the forest"), ("desert", "lives in the desert"),
               ("sea", "lives in the sea"), ("mountains", "lives in the mountains"), ("swamp", "lives in the swamp")),
    _attribute("size", ("small", "is small"), ("large", "is large"), ("medium", "is medium-sized"),
               ("tiny", "is tiny"), ("huge", "is huge")),
    _attribute("colour", ("red", "is red"), ("blue", "is blue"), ("green", "is green"), ("yellow", "is yellow"),
               ("purple", "is purple")),
    _attribute("skin", ("scales", "is covered in scales"), ("fur", "is covered in fur"),
               ("feathers", "is covered in feathers"), ("bark", "is covered in bark"),
               ("slime", "is covered in slime")),
    _attribute("active time", ("day", "is active by day"), ("night", "is active at night"),
               ("dawn", "is active at dawn"), ("dusk", "is active at dusk"), ("midday", "is active at midday")),
    _attribute("eye count", ("two", "has two eyes"), ("four", "has four eyes"), ("one", "has one eye"),
               ("three", "has three eyes"), ("six", "has six eyes")),
    _attribute("tail", ("long", "has a long tail"), ("short", "has a short tail"), ("forked", "has a forked tail"),
               ("curled", "has a curled tail"), ("spiked", "has a spiked tail")),
    _attribute("call", ("song", "sings"), ("hiss", "hisses"), ("roar", "roars"), ("click", "clicks"),
               ("whistle", "whistles")),
    _attribute("horns", ("none", "has no horns"), ("one", "has one horn"), ("two", "has two horns"),
               ("three", "has three horns"), ("curved", "has curved horns")),
    _attribute("legs", ("two", "walks on two legs"), ("four", "walks on four legs"), ("six", "walks on six legs"),
               ("eight", "walks on eight legs"), ("ten", "walks on ten legs")),
    _attribute("back", ("smooth", "has a smooth back"), ("spiny", "has a spiny back"),
               ("shelled", "has a shelled back"), ("ridged", "has a ridged back"), ("plated", "has a plated back")),
    _attribute("temper", ("shy", "is shy"), ("bold", "is bold"), ("calm", "is calm"), ("playful", "is playful"),
               ("grumpy", "is grumpy")),
    _attribute("smell", ("sweet", "smells sweet"), ("sour", "smells sour"), ("musky", "smells musky"),
               ("smoky", "smells smoky"), ("fresh", "smells fresh")),
    _attribute("nest", ("burrow", "nests in a burrow"), ("tree", "nests in a tree"), ("cave", "nests in a cave"),
               ("reef", "nests on a reef"), ("dune", "nests in a dune")),
    _attribute("pattern", ("plain", "has a plain coat"), ("striped", "has a striped coat"),
               ("spotted", "has a spotted coat"), ("banded", "has a banded coat"),
               ("speckled", "has a speckled coat")),
    _attribute("ears", ("pointed", "has pointed ears"), ("round", "has round ears"), ("floppy", "has floppy ears"),
               ("tufted", "has tufted ears"), ("hidden", "has hidden ears")),
    _attribute("gait", ("hopping", "moves by hopping"), ("crawling", "moves by crawling"),
               ("running", "moves by running"), ("gliding", "moves by gliding"), ("waddling", "moves by waddling")),
    _attribute("season", ("spring", "breeds in spring"), ("summer", "breeds in summer"),
               ("autumn", "breeds in autumn"), ("winter", "breeds in winter"), ("monsoon", "breeds in the monsoon")),
)

LOAN_POOL = (
    _attribute("income", ("high", "has a high income"), ("low", "has a low income"),
               ("moderate", "has a moderate income"), ("irregular", "has an irregular income"),
               ("seasonal", "has a seasonal income")),
    _attribute("employment", ("salaried", "is salaried"), ("self-employed", "is self-employed"),
               ("unemployed", "is unemployed"), ("contract", "works on contract"), ("retired", "is retired")),
    _attribute("credit history", ("clean", "has a clean credit history"),
               ("spotty", "has a spotty credit history"), ("thin", "has a thin credit history"),
               ("defaulted", "has defaulted on a loan before"), ("bankrupt", "has been bankrupt")),
    _attribute("debt", ("light", "has light debt"), ("heavy", "has heavy debt"), ("average", "has average debt"),
               ("zero", "has zero debt"), ("rising", "has rising debt")),
    _attribute("housing", ("owner", "owns a home"), ("renter", "rents a home"), ("mortgage", "pays a mortgage"),
               ("family", "lives with family"), ("company", "lives in company housing")),
    _attribute("purpose", ("car", "wants the loan for a car"), ("house", "wants the loan for a house"),
               ("business", "wants the loan for a business"), ("education", "wants the loan for education"),
               ("travel", "wants the loan for travel")),
    _attribute("amount", ("small", "asks for a small loan"), ("large", "asks for a large loan"),
               ("medium", "asks for a medium loan"), ("tiny", "asks for a tiny loan"),
               ("jumbo", "asks for a jumbo loan")),
    _attribute("age group", ("young", "is young"), ("senior", "is a senior"), ("middle-aged", "is middle-aged"),
               ("student", "is a student"), ("retiree", "is a retiree")),
    _attribute("collateral", ("property", "offers property as collateral"), ("none", "offers no collateral"),
               ("vehicle", "offers a vehicle as collateral"), ("jewellery", "offers jewellery as collateral"),
               ("shares", "offers shares as collateral")),
    _attribute("co-signer", ("none", "has no co-signer"), ("parent", "has a parent as co-signer"),
               ("spouse", "has a spouse as co-signer"), ("friend", "has a friend as co-signer"),
               ("employer", "has the employer as co-signer")),
    _attribute("bank account", ("new", "has a new bank account"), ("established", "has an established bank account"),
               ("old", "has an old bank account"), ("dormant", "has a dormant bank account"),
               ("joint", "has a joint bank account")),
    _attribute("region", ("urban", "lives in an urban area"), ("rural", "lives in a rural area"),
               ("suburban", "lives in a suburban area"), ("coastal", "lives in a coastal area"),
               ("remote", "lives in a remote area")),
    _attribute("dependents", ("none", "has no dependents"), ("one", "has one dependent"),
               ("two", "has two dependents"), ("three", "has three dependents"), ("many", "has many dependents")),
    _attribute("savings", ("ample", "has ample savings"), ("scarce", "has scarce savings"),
               ("modest", "has modest savings"), ("growing", "has growing savings"),
               ("frozen", "has frozen savings")),
    _attribute("term", ("short", "wants a short term"), ("long", "wants a long term"),
               ("medium", "wants a medium term"), ("flexible", "wants a flexible term"),
               ("fixed", "wants a fixed term")),
    _attribute("payments", ("on time", "pays on time"), ("late", "pays late"), ("missed", "has missed payments"),
               ("early", "pays early"), ("irregular", "pays irregularly")),
    _attribute("education", ("degree", "has a degree"), ("diploma", "has a diploma"),
               ("none", "has no qualifications"), ("doctorate", "has a doctorate"),
               ("apprenticeship", "has an apprenticeship")),
    _attribute("marital status", ("single", "is single"), ("married", "is married"), ("divorced", "is divorced"),
               ("widowed", "is widowed"), ("partnered", "is partnered")),
    _attribute("job tenure", ("new", "is new in the job"), ("steady", "has a steady job"),
               ("long", "has held the job for long"), ("brief", "has held the job briefly"),
               ("lifelong", "has held the job for life")),
    _attribute("channel", ("branch", "applied at a branch"), ("online", "applied online"),
               ("broker", "applied through a broker"), ("phone", "applied by phone"),
               ("agent", "applied through an agent")),
)

DOMAINS: dict[str, Domain] = {
    "creatures": Domain("made-up creatures sorted into species", "creature", CREATURE_POOL,
                        ("Florp", "Zindle", "Quarrow", "Brimlet", "Vexal", "Moxen", "Tarrik", "Glimmet"), "is a {}"),
    "loans": Domain("loan applications and the bank's decision", "applicant", LOAN_POOL,
                    ("Approve", "Decline", "Refer", "Defer", "Escalate", "Counteroffer", "Waitlist", "Reprice"),
                    "gets the decision {}"),
}

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
        return f"from {_number_text(self.low)} to {_number_text(self.high)}"

    def parse(self, raw: str, spec: str):
        fix = f"write one, e.g. {self.name}={_number_text(self.default)}"
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


def _number_text(value) -> str:
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
    return RULES_PREFIX + ",".join(f"{name}={_number_text(knobs[name])}" for name in RULE_KNOBS)


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
            raise UserError(f"the task spec {spec!r} sets noise={_number_text(given['noise'])} and the label noise "
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


def _phrases_listed(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def rule_sentence(task: Task, when: dict[str, str], label: str) -> str:
    """One truth-table row in words: "A creature that is red and has a long tail is a Florp." """
    attributes = {a.name: a for a in task.attributes}
    listed = _phrases_listed([attributes[a].phrase(v) for a, v in when.items()])
    return f"{_article(task.noun).capitalize()} {task.noun} that {listed} {task.class_phrase.format(label)}."


DECISION_LIST_TRIES = 2000


def _decision_list(rng: random.Random, relevant: list[Attribute], classes: tuple[str, ...]):
    """Ordered rules (each a few attribute=value conditions and a class) and a default class, drawn
    until every class occurs, every relevant attribute matters and every rule decides some case;
    the table they give."""
    combos = list(itertools.product(*(a.values for a in relevant)))
    for _ in range(DECISION_LIST_TRIES):
        default, *others = rng.sample(classes, len(classes))
        rules = []
        for position in range(len(others) + rng.randint(0, len(relevant))):
            chosen = sorted(rng.sample(range(len(relevant)), rng.randint(1, len(relevant))))
            when = {relevant[i].name: rng.choice(relevant[i].values) for i in chosen}
            rules.append((when, others[position] if position < len(others) else rng.choice(others)))
        table, fired = {}, set()
        for combo in combos:
            features = dict(zip([a.name for a in relevant], combo, strict=True))
            rule = next((i for i, (when, _) in enumerate(rules)
                         if all(features[a] == v for a, v in when.items())), None)
            fired.add(rule)
            table[combo] = default if rule is None else rules[rule][1]
        if (set(table.values()) == set(classes) and fired >= set(range(len(rules)))
                and all(_attribute_matters(table, i) for i in range(len(relevant)))):
            return table, rules, default
    # Few combinations for many classes: a list of whole rows always works.
    table = _truth_table(rng, relevant, classes)
    default = table[combos[-1]]
    rules = [(dict(zip([a.name for a in relevant], combo, strict=True)), label)
             for combo, label in table.items() if label != default]
    return table, rules, default


def _count_rule(rng: random.Random, relevant: list[Attribute], classes: tuple[str, ...]):
    """Each relevant attribute gets a marked value; the class is given by how many of them a sample
    has, cut into as many ranges as there are classes. Every cut makes every attribute matter."""
    marked = [rng.choice(a.values) for a in relevant]
    cuts = sorted(rng.sample(range(1, len(relevant) + 1), len(classes) - 1))
    ranges = list(zip([0, *cuts], [c - 1 for c in cuts] + [len(relevant)], strict=True))
    order = rng.sample(classes, len(classes))
    table = {}
    for combo in itertools.product(*(a.values for a in relevant)):
        count = sum(v == m for v, m in zip(combo, marked, strict=True))
        table[combo] = next(label for (low, high), label in zip(ranges, order, strict=True) if low <= count <= high)
    return table, marked, list(zip(ranges, order, strict=True))


def _count_range(low: int, high: int, most: int) -> str:
    if low == high:
        return "none" if low == 0 else ("all" if low == most > 1 else f"exactly {low}")
    if high == most:
        return f"{low} or more"
    return f"at most {high}" if low == 0 else f"{low} to {high}"


def generate_rules_task(spec: str, label_noise: float | None = None) -> Task:
    """The task a `rules:knob=value,...` spec names (parse_rules_spec: its grammar and errors); the
    same canonical spec gives the same task, byte for byte."""
    return _generated(rules_spec(parse_rules_spec(spec, label_noise)))


@functools.lru_cache(maxsize=16)
def _generated(canonical: str) -> Task:
    knobs = parse_rules_spec(canonical)
    domain = DOMAINS[knobs["domain"]]
    count, classes = knobs["values"], domain.classes[:knobs["classes"]]
    attributes = tuple(Attribute(a.name, a.values[:count], a.phrases[:count])
                       for a in domain.attributes[:knobs["attributes"]])
    structure = ",".join(f"{name}={_number_text(knobs[name])}" for name in STRUCTURE_KNOBS)
    rng = random.Random(f"iml-rules/{structure}")
    relevant = [attributes[i] for i in sorted(rng.sample(range(len(attributes)), knobs["relevant"]))]
    # A stand-in with the words, to write the rule's sentences before the samples exist.
    words = Task(canonical, domain.noun, attributes, classes, (), None, class_phrase=domain.class_phrase)
    noun, form, extra = domain.noun, knobs["form"], {}
    if form == "table":
        table = _truth_table(rng, relevant, classes)
        sentences = [rule_sentence(words, dict(zip([a.name for a in relevant], combo, strict=True)), label)
                     for combo, label in table.items()]
    elif form == "list":
        table, rules, default = _decision_list(rng, relevant, classes)
        sentences = []
        for position, (when, label) in enumerate(rules):
            sentence = rule_sentence(words, when, label)
            sentences.append(sentence if position == 0 else f"Otherwise, {sentence[0].lower()}{sentence[1:]}")
        sentences.append(f"Otherwise, any other {noun} {domain.class_phrase.format(default)}.")
    else:
        table, marked, ranges = _count_rule(rng, relevant, classes)
        traits = [a.phrase(m) for a, m in zip(relevant, marked, strict=True)]
        extra["marked"] = {a.name: m for a, m in zip(relevant, marked, strict=True)}
        sentences = [f"The class depends on how many of these hold for {_article(noun)} {noun}: {', '.join(traits)}."]
        sentences += [f"{_article(noun).capitalize()} {noun} with {_count_range(low, high, len(relevant))} of them "
                      f"{domain.class_phrase.format(label)}." for (low, high), label in ranges]

    # Features and noise have streams of their own: more samples extend the same sequence, and a
    # noisier task replaces labels of the same samples (a superset of a quieter one's).
    feature_rng = random.Random(f"iml-rules/{structure}/features")
    noise_rng = random.Random(f"iml-rules/{structure}/noise")
    opening = f"This {noun}"
    samples = []
    for sample_id in range(knobs["samples"]):
        features = {a.name: feature_rng.choice(a.values) for a in attributes}
        label = table[tuple(features[a.name] for a in relevant)]
        chance, pick = noise_rng.random(), noise_rng.randrange(len(classes) - 1)
        if chance < knobs["noise"]:
            label = [c for c in classes if c != label][pick]
        samples.append(Sample(sample_id, features, sample_sentence(opening, attributes, features), label))

    distractors = len(attributes) - len(relevant)
    description = (f"{len(classes)} classes of {noun}s, given by {FORMS[form].split(':')[0]} "
                   f"over {len(relevant)} of {len(attributes)} attributes with {count} values each"
                   + (f"; the other {distractors} are distractors" if distractors else "")
                   + (f"; {round(knobs['noise'] * 100, 2):g}% of the labels replaced" if knobs["noise"] else "")
                   + ".")
    rule_card = {
        "task": canonical,
        "description": description,
        "seed": knobs["seed"],
        "samples": knobs["samples"],
        "label_noise": knobs["noise"],
        "form": form,
        "domain": knobs["domain"],
        "classes": list(classes),
        "attributes": {a.name: list(a.values) for a in attributes},
        "relevant": [a.name for a in relevant],
        "table": [
            {"when": dict(zip([a.name for a in relevant], combo, strict=True)), "class": label}
            for combo, label in table.items()
        ],
        "rules": sentences,
        **extra,
    }
    return dataclasses.replace(words, samples=tuple(samples), rule_card=rule_card,
                               source={"rules": canonical})


# --- files -------------------------------------------------------------------------------

def task_csv_text(task: Task) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", *(a.name for a in task.attributes), "label", "text"])
    for s in task.samples:
        writer.writerow([s.id, *(s.features[a.name] for a in task.attributes), s.label, s.text])
    return buffer.getvalue()


def rule_card_text(task: Task) -> str:
    return json.dumps(task.rule_card, indent=2, ensure_ascii=False) + "\n"


def benchmark_files(preset: str, directory: Path = DATA_DIR) -> tuple[Path, Path]:
    return directory / f"{preset}.csv", directory / f"{preset}.rules.json"


def write_benchmark(preset: str, directory: Path = DATA_DIR, seed: int = BENCHMARK_SEED) -> tuple[Path, Path]:
    task = generate_benchmark(preset, seed)
    csv_path, card_path = benchmark_files(preset, directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path.write_text(task_csv_text(task), encoding="utf-8")
    card_path.write_text(rule_card_text(task), encoding="utf-8")
    return csv_path, card_path


# --- a user's CSV ------------------------------------------------------------------------

# Columns with these names are not features: `id` names the sample, `text` is its sentence.
ID_COLUMN, TEXT_COLUMN = "id", "text"


# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def looks_like_formula(cell: str) -> bool:
    return cell.startswith(FORMULA_START)


def formula_like_cells(task: Task) -> list[tuple[int, str, str]]:
    """(sample id, column, cell) of every cell a spreadsheet would run. Harmless here, where cells
    are only ever read as words, but worth a warning: exports prefix them with an apostrophe."""
    found = []
    for sample in task.samples:
        cells = {**sample.features, "label": sample.label, "text": sample.text}
        found += [(sample.id, column, cell) for column, cell in cells.items() if looks_like_formula(cell)]
    return found


DELIMITERS = ",;\t|"  # what spreadsheets write: commas, semicolons (European locales), tabs, pipes
LARGEST_ID = 2**63 - 1  # sample ids are stored as 64-bit integers


def _csv_rows(data: bytes, name: str) -> list[list[str]]:
    """The non-blank rows of a CSV in any of the usual delimiters (sniffed from its start)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{name} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8 CSV and try again") from None
    if not text.strip():
        raise UserError(f"{name} is empty; a task needs a header row and at least two data rows")
    try:
        dialect = csv.Sniffer().sniff(text[:64 * 1024], delimiters=DELIMITERS)
    except csv.Error:  # one column, or nothing to tell by: commas
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=dialect.delimiter))
    except csv.Error as e:
        raise UserError(f"{name} is not a readable CSV ({e}); check its quoting") from None
    return [r for r in rows if any(cell.strip() for cell in r)]


def csv_columns(data: bytes, name: str) -> list[str]:
    """The column names of a CSV (its delimiter sniffed, as parse_csv_task does); [] when it has none."""
    try:
        rows = _csv_rows(data, name)
    except UserError:
        return []
    return [h.strip() for h in rows[0] if h.strip()] if rows else []


def parse_csv_task(data: bytes, name: str, label_column: str = "label") -> Task:
    """Turns the bytes of a CSV into a task, or raises UserError naming what is wrong and how to fix it."""
    rows = _csv_rows(data, name)
    header = [h.strip() for h in rows[0]]
    for position, column in enumerate(header, start=1):
        if not column:
            raise UserError(f"column {position} of {name} has no name; give every column a header")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise UserError(f"{name} has the column {duplicates[0]!r} more than once; give each column its own name")
    if label_column not in header:
        near = [h for h in header if h.lower() == label_column.lower()]
        hint = f"did you mean {near[0]!r}?" if near else "name the column that holds the classes"
        raise UserError(f"{name} has no label column {label_column!r} (its columns: {', '.join(header)}); {hint}")
    feature_columns = [h for h in header if h not in (label_column, ID_COLUMN, TEXT_COLUMN)]
    if not feature_columns:
        raise UserError(f"{name} has no feature columns besides {label_column!r}; add the attributes to learn from")
    body = rows[1:]
    if len(body) < 2:
        raise UserError(f"{name} has {len(body)} data row(s); a task needs at least two")

    records = []
    for line_number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise UserError(
                f"row {line_number} of {name} has {len(row)} cells but the header has {len(header)}; "
                "fix that row (quote cells that contain commas)")
        record = {h: cell.strip() for h, cell in zip(header, row, strict=True)}
        if not record[label_column]:
            raise UserError(f"row {line_number} of {name} has an empty {label_column!r}; give every row a label")
        records.append(record)

    classes = tuple(dict.fromkeys(r[label_column] for r in records))
    if len(classes) < 2:
        raise UserError(
            f"every row of {name} has the label {classes[0]!r}; a task needs at least two classes")
    attributes = tuple(
        Attribute(column, tuple(dict.fromkeys(r[column] for r in records))) for column in feature_columns)
    samples = []
    for index, r in enumerate(records):
        features = {c: r[c] for c in feature_columns}
        sentence = r.get(TEXT_COLUMN) or sample_sentence("A sample where", attributes, features)
        samples.append(Sample(_sample_id(r.get(ID_COLUMN), index, name), features, sentence, r[label_column]))
    if len({s.id for s in samples}) != len(samples):
        raise UserError(f"the {ID_COLUMN!r} column of {name} repeats ids; make them unique or drop the column")
    return Task(
        name=Path(name).stem,
        noun="sample",
        attributes=attributes,
        classes=classes,
        samples=tuple(samples),
        rule_card=None,
        source={"csv": name, "sha256": hashlib.sha256(data).hexdigest(), "label_column": label_column},
    )


def _sample_id(raw: str | None, index: int, name: str) -> int:
    """A row's id: its `id` cell when that is a whole number, else its position."""
    if raw is not None and raw.isdigit():
        if int(raw) > LARGEST_ID:
            raise UserError(f"the id {raw} in {name} is larger than {LARGEST_ID}, the largest 64-bit id; "
                            "use smaller ids or drop the id column")
        return int(raw)
    return index


def rule_card_path(csv_path: str | Path) -> Path:
    """Where a CSV task's optional rule card lives: NAME.rules.json beside NAME.csv."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}.rules.json")


def _listing(values) -> str:
    return ", ".join(repr(v) for v in values)


def parse_rule_card(data: bytes, name: str, task: Task) -> dict:
    """A CSV task's rule card from the bytes of its NAME.rules.json, checked against the CSV; or a
    UserError naming the first mismatch and its fix.

    The format is the one `iml data` writes for the presets, so a preset's card works as it is:

    - `relevant` (required): the feature columns the class depends on, each once.
    - `table` (required): rows `{"when": {column: value, ...}, "class": label}`. Each row names a
      value of every relevant column and nothing else; each value occurs in that column of the CSV
      and each class is one of its labels; no two rows name the same case. Every combination of the
      relevant values that some row of the CSV has must have a row, and every label of the CSV must
      be some row's class, so that the card classifies every sample and scores every class.
      Combinations no sample has may be left out.
    - `classes`, `attributes` (optional): when given, each class must be a label of the CSV, each
      attribute a feature column, and each of its values one the column holds.
    - `rules` (optional): the rule in plain sentences, shown with the card.

    Other keys (task, description, seed...) are kept and not checked. The labels themselves are not
    checked against the table: a CSV may hold noisy labels.
    """
    try:
        card = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(f"{name} is not UTF-8 text; save it as UTF-8 JSON or remove it") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{name} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); fix it or "
                        "remove it to use the CSV without a rule card") from None
    if not isinstance(card, dict):
        raise UserError(f"{name} holds a JSON {type(card).__name__}, not an object with 'relevant' and 'table'; "
                        "write it as data/paper.rules.json is written")
    columns = {a.name: a for a in task.attributes}
    csv_name = task.source.get("csv", task.name)

    def column(value, where: str) -> Attribute:
        if not isinstance(value, str) or value not in columns:
            raise UserError(f"{where} of {name} names the column {value!r}, which is not a feature column of "
                            f"{csv_name} (those are {_listing(columns)}); fix the name")
        return columns[value]

    def known_value(attribute: Attribute, value, where: str) -> None:
        if value not in attribute.values:
            raise UserError(f"{where} of {name} gives {attribute.name} = {value!r}, which no row of {csv_name} has "
                            f"(its values: {_listing(attribute.values)}); fix the value")

    def known_class(label, where: str) -> None:
        if label not in task.classes:
            raise UserError(f"{where} of {name} gives the class {label!r}, which is not a label in {csv_name} "
                            f"(its labels: {_listing(task.classes)}); fix the class")

    relevant = card.get("relevant")
    if not isinstance(relevant, list) or not relevant:
        raise UserError(f"{name} has no 'relevant' list; name the feature columns the class depends on, "
                        'e.g. "relevant": ["colour"]')
    relevant = [column(c, "'relevant'").name for c in relevant]
    if len(set(relevant)) != len(relevant):
        raise UserError(f"'relevant' of {name} names {_listing(sorted({c for c in relevant if relevant.count(c) > 1}))}"
                        " more than once; name each column once")
    for label in card.get("classes") or []:
        known_class(label, "'classes'")
    attributes = card.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise UserError(f"'attributes' of {name} is not an object of column: [values]; fix it or leave it out")
    for attribute, values in attributes.items():
        for value in values if isinstance(values, list) else [values]:
            known_value(column(attribute, "'attributes'"), value, "'attributes'")

    table, rows = card.get("table"), {}
    if not isinstance(table, list) or not table:
        raise UserError(f"{name} has no 'table' list; give a row per case, e.g. "
                        '{"when": {"colour": "red"}, "class": "apple"}')
    for number, row in enumerate(table, start=1):
        where = f"row {number} of 'table'"
        if not isinstance(row, dict) or not isinstance(row.get("when"), dict) or "class" not in row:
            raise UserError(f"{where} of {name} is not {{\"when\": {{column: value}}, \"class\": label}}; fix it")
        when = row["when"]
        for attribute in when:
            if attribute not in relevant:
                raise UserError(f"{where} of {name} names {attribute!r}, which is not in 'relevant' "
                                f"({_listing(relevant)}); add it there or drop it from the row")
        for attribute in relevant:
            if attribute not in when:
                raise UserError(f"{where} of {name} gives no value for {attribute!r}; every row names a value "
                                "of each relevant column")
            known_value(columns[attribute], when[attribute], where)
        known_class(row["class"], where)
        case = tuple(when[a] for a in relevant)
        if case in rows:
            raise UserError(f"rows {rows[case][0]} and {number} of 'table' in {name} both give the case "
                            f"{_case_text(relevant, case)}; keep one")
        rows[case] = (number, row["class"])
    for sample in task.samples:
        case = tuple(sample.features[a] for a in relevant)
        if case not in rows:
            raise UserError(f"'table' of {name} has no row for {_case_text(relevant, case)}, which sample "
                            f"{sample.id} of {csv_name} has; add a row for it")
    unused = [label for label in task.classes if label not in {label for _, label in rows.values()}]
    if unused:
        raise UserError(f"no row of 'table' in {name} gives the class {unused[0]!r}, a label in {csv_name}; "
                        "add the rows where it is the class, or fix the labels")
    rules = card.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(s, str) for s in rules):
        raise UserError(f"'rules' of {name} is not a list of sentences; fix it or leave it out")
    return {**card, "relevant": relevant,
            "table": [{"when": {a: row["when"][a] for a in relevant}, "class": row["class"]} for row in table]}


def _case_text(relevant: list[str], case: tuple) -> str:
    return ", ".join(f"{a} = {v!r}" for a, v in zip(relevant, case, strict=True))


def load_csv_task(path: str | Path, label_column: str = "label") -> Task:
    """A CSV file as a task, with the rule card beside it (rule_card_path) when there is one:
    parse_rule_card says what it must hold. The card's sha256 joins the CSV's in the task's source."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a CSV file; give the path of the file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no such task file: {path}; give a preset ({', '.join(PRESETS)}) or an existing CSV") from None
    except PermissionError:
        raise UserError(f"cannot read {path}: permission denied; check the file's permissions") from None
    task = parse_csv_task(data, str(path), label_column)
    card_path = rule_card_path(path)
    try:
        card_data = card_path.read_bytes()
    except FileNotFoundError:
        return task
    except OSError as e:
        raise UserError(f"cannot read the rule card {card_path}: {e.strerror}; fix its permissions or remove "
                        "it") from None
    card = parse_rule_card(card_data, str(card_path), task)
    return dataclasses.replace(task, rule_card=card, source={
        **task.source, "rules": str(card_path), "rules_sha256": hashlib.sha256(card_data).hexdigest()})


def load_task(spec: str, label_column: str = "label", label_noise: float | None = None) -> Task:
    """A preset's name, a generated task's spec (`rules:knob=value,...`: parse_rules_spec) or the
    path of a CSV (with its rule card, if it has one)."""
    if spec in PRESETS:
        return generate_benchmark(spec, label_noise=label_noise)
    if is_rules_spec(spec):
        return generate_rules_task(spec, label_noise)
    if label_noise:
        raise UserError("label noise applies to the presets and generated tasks only; a CSV task keeps its labels")
    if spec.lower().endswith(".csv") or Path(spec).exists():
        return load_csv_task(spec, label_column)
    raise UserError(f"unknown task {spec!r}; choose a preset ({', '.join(PRESETS)}), a generated task "
                    "(rules:classes=3,relevant=2,... with the knobs " + ", ".join(RULE_KNOBS)
                    + ") or the path of a CSV file")


def saved_tasks(directory: Path = TASKS_DIR) -> list[Path]:
    return sorted(directory.glob("*.csv")) if directory.is_dir() else []


def save_task(task: Task, name: str, directory: Path = TASKS_DIR) -> Path:
    """Writes a parsed CSV task in the shipped layout (id, attributes, label, text), which loads
    back as the same task; refuses to overwrite."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
        raise UserError(f"task name {name!r} may use letters, digits, '-' and '_' "
                        "(up to 64, starting with a letter or digit)")
    if name in PRESETS:
        raise UserError(f"{name!r} is a preset's name; choose another")
    path = directory / f"{name}.csv"
    if path.exists():
        raise UserError(f"a task named {name!r} exists already; choose another name")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(task_csv_text(task), encoding="utf-8")
    return path

"""Drawing a rule and its samples: truth tables, decision lists and counts over the relevant
attributes, and the task a `rules:` spec (spec.py) names."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random

from iml_core.tasks.domains import DOMAINS
from iml_core.tasks.spec import FORMS, STRUCTURE_KNOBS, number_text, parse_rules_spec, rules_spec
from iml_core.tasks.types import Attribute, Sample, Task, article, card_body, rule_sentence, table_rows, sample_sentence


def truth_table(rng: random.Random, relevant: list[Attribute], classes: tuple[str, ...]) -> dict:
    """A table from every combination of the relevant values to a class in which every class
    occurs and every relevant attribute matters (none can be dropped without losing the class)."""
    combos = list(itertools.product(*(a.values for a in relevant)))
    if len(combos) == len(classes):
        return dict(zip(combos, rng.sample(classes, len(classes)), strict=False))
    while True:
        table = {combo: rng.choice(classes) for combo in combos}
        if set(table.values()) != set(classes):
            continue
        if all(attribute_matters(table, i) for i in range(len(relevant))):
            return table


def attribute_matters(table: dict, index: int) -> bool:
    seen: dict[tuple, str] = {}
    for combo, label in table.items():
        rest = combo[:index] + combo[index + 1:]
        if seen.setdefault(rest, label) != label:
            return True
    return False


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
                and all(attribute_matters(table, i) for i in range(len(relevant)))):
            return table, rules, default
    # Few combinations for many classes: a list of whole rows always works.
    table = truth_table(rng, relevant, classes)
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
    structure = ",".join(f"{name}={number_text(knobs[name])}" for name in STRUCTURE_KNOBS)
    rng = random.Random(f"iml-rules/{structure}")
    relevant = [attributes[i] for i in sorted(rng.sample(range(len(attributes)), knobs["relevant"]))]
    # A stand-in with the words, to write the rule's sentences before the samples exist.
    words = Task(canonical, domain.noun, attributes, classes, (), None, class_phrase=domain.class_phrase)
    noun, form, extra = domain.noun, knobs["form"], {}
    if form == "table":
        table = truth_table(rng, relevant, classes)
        sentences = [rule_sentence(words, row["when"], row["class"]) for row in table_rows(relevant, table)]
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
        sentences = [f"The class depends on how many of these hold for {article(noun)} {noun}: {', '.join(traits)}."]
        sentences += [f"{article(noun).capitalize()} {noun} with {_count_range(low, high, len(relevant))} of them "
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
        **card_body(classes, attributes, relevant, table),
        "rules": sentences,
        **extra,
    }
    return dataclasses.replace(words, samples=tuple(samples), rule_card=rule_card,
                               source={"rules": canonical})

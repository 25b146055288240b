"""The creature benchmark of the IML paper and its harder variants, as named presets."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from iml_core.errors import UserError
from iml_core.tasks.generator import truth_table
from iml_core.tasks.types import Attribute, Sample, Task, attribute, card_body, sample_sentence

BENCHMARK_SEED = 0  # the seed of the files shipped in data/


def _binary(name: str, a: str, b: str, phrase_a: str, phrase_b: str) -> Attribute:
    return attribute(name, (a, phrase_a), (b, phrase_b))


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
    table = truth_table(rng, relevant_attrs, SPECIES)

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
        **card_body(SPECIES, spec.attributes, relevant_attrs, table),
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

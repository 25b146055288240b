"""Tasks: the creature benchmark of the IML paper, its harder variants, and a user's own CSV.

A task is a list of samples, each an observation (attribute values rendered as one English
sentence) and a label. Benchmark tasks keep their rule card: which attributes decide the class
and the truth table, so notes can later be scored against the truth.
"""

from __future__ import annotations

import csv
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
        CREATURE_ATTRIBUTES, relevant_count=2, samples=3200, label_noise=0.1),
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
    spec = PRESETS[preset]
    noise = spec.label_noise if label_noise is None else label_noise
    if not 0.0 <= noise < 1.0:
        raise UserError(f"label noise must be at least 0 and below 1, got {noise}")
    rng = random.Random(f"iml-benchmark/{preset}/{seed}")
    relevant = sorted(rng.sample(range(len(spec.attributes)), spec.relevant_count))
    relevant_attrs = [spec.attributes[i] for i in relevant]
    table = _truth_table(rng, relevant_attrs, SPECIES)

    samples = []
    for sample_id in range(spec.samples):
        features = {a.name: rng.choice(a.values) for a in spec.attributes}
        label = table[tuple(features[a.name] for a in relevant_attrs)]
        if rng.random() < noise:
            label = rng.choice([c for c in SPECIES if c != label])
        samples.append(Sample(sample_id, features, sample_sentence("This creature", spec.attributes, features), label))

    rule_card = {
        "task": preset,
        "description": spec.description,
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
        source={"preset": preset, "seed": seed, "label_noise": noise},
    )


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


def load_csv_task(path: str | Path, label_column: str = "label") -> Task:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a CSV file; give the path of the file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no such task file: {path}; give a preset ({', '.join(PRESETS)}) or an existing CSV") from None
    except PermissionError:
        raise UserError(f"cannot read {path}: permission denied; check the file's permissions") from None
    return parse_csv_task(data, str(path), label_column)


def load_task(spec: str, label_column: str = "label", label_noise: float | None = None) -> Task:
    """A preset name or the path of a CSV."""
    if spec in PRESETS:
        return generate_benchmark(spec, label_noise=label_noise)
    if label_noise:
        raise UserError("label noise applies to the benchmark presets only; a CSV task keeps its labels")
    if spec.lower().endswith(".csv") or Path(spec).exists():
        return load_csv_task(spec, label_column)
    raise UserError(f"unknown task {spec!r}; choose a preset ({', '.join(PRESETS)}) or the path of a CSV file")


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

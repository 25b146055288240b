"""Where tasks live on disk: the shipped benchmark files in data/, the CSV tasks saved from the
dashboard, and the one way to turn a task setting (a preset, a `rules:` spec, a CSV path) into a task."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

from iml_core.errors import UserError
from iml_core.tasks.csv_task import parse_csv_task, task_csv_text
from iml_core.tasks.generator import generate_rules_task
from iml_core.tasks.presets import BENCHMARK_SEED, PRESETS, generate_benchmark
from iml_core.tasks.rule_card import parse_rule_card, rule_card_path, rule_card_text
from iml_core.tasks.spec import RULE_KNOBS, is_rules_spec
from iml_core.tasks.types import Task

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "data"
TASKS_DIR = DATA_DIR / "tasks"  # CSV tasks saved from the dashboard


def benchmark_files(preset: str, directory: Path = DATA_DIR) -> tuple[Path, Path]:
    return directory / f"{preset}.csv", directory / f"{preset}.rules.json"


def write_benchmark(preset: str, directory: Path = DATA_DIR, seed: int = BENCHMARK_SEED) -> tuple[Path, Path]:
    task = generate_benchmark(preset, seed)
    csv_path, card_path = benchmark_files(preset, directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path.write_text(task_csv_text(task), encoding="utf-8")
    card_path.write_text(rule_card_text(task), encoding="utf-8")
    return csv_path, card_path


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

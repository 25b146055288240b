"""Tasks: the creature benchmark of the IML paper, its harder variants, tasks generated from a
spec with knobs (`rules:classes=3,relevant=2,...`), and a user's own CSV.

A task is a list of samples, each an observation (attribute values rendered as one English
sentence) and a label. Benchmark and generated tasks keep their rule card: which attributes decide
the class and the truth table, so notes can later be scored against the truth; a CSV gets one from
a `NAME.rules.json` beside it.

One module per job, low to high: types (the dataclasses and their sentences), domains (the words
generated tasks are written in), spec (the `rules:` knobs), generator (rules and their samples),
presets (the benchmark), csv_task and rule_card (a user's files), files (data/ and load_task).
Everything is importable from here.
"""

from iml_core.tasks.csv_task import (DELIMITERS, FORMULA_START, ID_COLUMN, LARGEST_ID, TEXT_COLUMN, csv_columns,
                                     formula_like_cells, looks_like_formula, parse_csv_task, task_csv_text)
from iml_core.tasks.domains import CREATURE_POOL, DOMAINS, LOAN_POOL, Domain
from iml_core.tasks.files import (DATA_DIR, TASKS_DIR, benchmark_files, load_csv_task, load_task, save_task,
                                  saved_tasks, write_benchmark)
from iml_core.tasks.generator import _generated, generate_rules_task, truth_table
from iml_core.tasks.presets import (BENCHMARK_SEED, CREATURE_ATTRIBUTES, MULTI_VALUED_ATTRIBUTES, PRESETS, SPECIES,
                                    Preset, generate_benchmark)
from iml_core.tasks.rule_card import parse_rule_card, rule_card_path, rule_card_text
from iml_core.tasks.spec import (FORMS, RULE_KNOBS, RULES_PREFIX, STRUCTURE_KNOBS, Knob, is_rules_spec,
                                 parse_rules_spec, rules_spec)
from iml_core.tasks.types import Attribute, Observation, Sample, Task, rule_sentence, sample_sentence

__all__ = [
    "Attribute", "BENCHMARK_SEED", "CREATURE_ATTRIBUTES", "CREATURE_POOL", "DATA_DIR", "DELIMITERS", "DOMAINS",
    "Domain", "FORMS", "FORMULA_START", "ID_COLUMN", "Knob", "LARGEST_ID", "LOAN_POOL", "MULTI_VALUED_ATTRIBUTES",
    "Observation", "PRESETS", "Preset", "RULES_PREFIX", "RULE_KNOBS", "SPECIES", "STRUCTURE_KNOBS", "Sample",
    "TASKS_DIR", "TEXT_COLUMN", "Task", "_generated", "benchmark_files", "csv_columns", "formula_like_cells",
    "generate_benchmark", "generate_rules_task", "is_rules_spec", "load_csv_task", "load_task",
    "looks_like_formula", "parse_csv_task", "parse_rule_card", "parse_rules_spec", "rule_card_path",
    "rule_card_text", "rule_sentence", "rules_spec", "sample_sentence", "save_task", "saved_tasks",
    "task_csv_text", "truth_table", "write_benchmark",
]

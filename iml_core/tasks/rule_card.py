"""A task's rule card: which attributes decide the class and the truth table, so that notes can be
scored against the truth. Presets and generated tasks write theirs; a CSV task reads one from a
`NAME.rules.json` beside it, checked against the CSV here."""

from __future__ import annotations

import json
from pathlib import Path

from iml_core.errors import UserError
from iml_core.tasks.types import Attribute, Task


def rule_card_path(csv_path: str | Path) -> Path:
    """Where a CSV task's optional rule card lives: NAME.rules.json beside NAME.csv."""
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}.rules.json")


def rule_card_text(task: Task) -> str:
    return json.dumps(task.rule_card, indent=2, ensure_ascii=False) + "\n"


def _listing(values) -> str:
    return ", ".join(repr(v) for v in values)


def _case_text(relevant: list[str], case: tuple) -> str:
    return ", ".join(f"{a} = {v!r}" for a, v in zip(relevant, case, strict=True))


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
    check = _CardCheck(name, task)
    relevant = check.relevant(card.get("relevant"))
    check.optional_parts(card)
    table = card.get("table")
    rows = check.table(table, relevant)
    check.covers_the_csv(rows, relevant)
    rules = card.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(s, str) for s in rules):
        raise UserError(f"'rules' of {name} is not a list of sentences; fix it or leave it out")
    return {**card, "relevant": relevant,
            "table": [{"when": {a: row["when"][a] for a in relevant}, "class": row["class"]} for row in table]}


class _CardCheck:
    """The checks of one card against one CSV task; each raises a UserError naming the card's place."""

    def __init__(self, name: str, task: Task):
        self.name, self.task = name, task
        self.columns = {a.name: a for a in task.attributes}
        self.csv_name = task.source.get("csv", task.name)

    def column(self, value, where: str) -> Attribute:
        if not isinstance(value, str) or value not in self.columns:
            raise UserError(f"{where} of {self.name} names the column {value!r}, which is not a feature column of "
                            f"{self.csv_name} (those are {_listing(self.columns)}); fix the name")
        return self.columns[value]

    def known_value(self, attribute: Attribute, value, where: str) -> None:
        if value not in attribute.values:
            raise UserError(f"{where} of {self.name} gives {attribute.name} = {value!r}, which no row of "
                            f"{self.csv_name} has (its values: {_listing(attribute.values)}); fix the value")

    def known_class(self, label, where: str) -> None:
        if label not in self.task.classes:
            raise UserError(f"{where} of {self.name} gives the class {label!r}, which is not a label in "
                            f"{self.csv_name} (its labels: {_listing(self.task.classes)}); fix the class")

    def relevant(self, relevant) -> list[str]:
        if not isinstance(relevant, list) or not relevant:
            raise UserError(f"{self.name} has no 'relevant' list; name the feature columns the class depends on, "
                            'e.g. "relevant": ["colour"]')
        relevant = [self.column(c, "'relevant'").name for c in relevant]
        if len(set(relevant)) != len(relevant):
            twice = _listing(sorted({c for c in relevant if relevant.count(c) > 1}))
            raise UserError(f"'relevant' of {self.name} names {twice} more than once; name each column once")
        return relevant

    def optional_parts(self, card: dict) -> None:
        for label in card.get("classes") or []:
            self.known_class(label, "'classes'")
        attributes = card.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise UserError(f"'attributes' of {self.name} is not an object of column: [values]; fix it or leave "
                            "it out")
        for attribute, values in attributes.items():
            for value in values if isinstance(values, list) else [values]:
                self.known_value(self.column(attribute, "'attributes'"), value, "'attributes'")

    def table(self, table, relevant: list[str]) -> dict[tuple, tuple[int, str]]:
        """Each case the table names: (its row's number, its class)."""
        if not isinstance(table, list) or not table:
            raise UserError(f"{self.name} has no 'table' list; give a row per case, e.g. "
                            '{"when": {"colour": "red"}, "class": "apple"}')
        rows: dict[tuple, tuple[int, str]] = {}
        for number, row in enumerate(table, start=1):
            where = f"row {number} of 'table'"
            if not isinstance(row, dict) or not isinstance(row.get("when"), dict) or "class" not in row:
                raise UserError(f"{where} of {self.name} is not {{\"when\": {{column: value}}, \"class\": label}}; "
                                "fix it")
            when = row["when"]
            for attribute in when:
                if attribute not in relevant:
                    raise UserError(f"{where} of {self.name} names {attribute!r}, which is not in 'relevant' "
                                    f"({_listing(relevant)}); add it there or drop it from the row")
            for attribute in relevant:
                if attribute not in when:
                    raise UserError(f"{where} of {self.name} gives no value for {attribute!r}; every row names a "
                                    "value of each relevant column")
                self.known_value(self.columns[attribute], when[attribute], where)
            self.known_class(row["class"], where)
            case = tuple(when[a] for a in relevant)
            if case in rows:
                raise UserError(f"rows {rows[case][0]} and {number} of 'table' in {self.name} both give the case "
                                f"{_case_text(relevant, case)}; keep one")
            rows[case] = (number, row["class"])
        return rows

    def covers_the_csv(self, rows: dict[tuple, tuple[int, str]], relevant: list[str]) -> None:
        for sample in self.task.samples:
            case = tuple(sample.features[a] for a in relevant)
            if case not in rows:
                raise UserError(f"'table' of {self.name} has no row for {_case_text(relevant, case)}, which sample "
                                f"{sample.id} of {self.csv_name} has; add a row for it")
        unused = [label for label in self.task.classes if label not in {label for _, label in rows.values()}]
        if unused:
            raise UserError(f"no row of 'table' in {self.name} gives the class {unused[0]!r}, a label in "
                            f"{self.csv_name}; add the rows where it is the class, or fix the labels")

"""A user's CSV as a task, and a task as the CSV the shipped files and saved tasks are written in."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

from iml_core.errors import UserError
from iml_core.tasks.types import Attribute, Sample, Task, sample_sentence


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


def task_csv_text(task: Task) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", *(a.name for a in task.attributes), "label", "text"])
    for s in task.samples:
        writer.writerow([s.id, *(s.features[a.name] for a in task.attributes), s.label, s.text])
    return buffer.getvalue()

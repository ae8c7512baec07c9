"""Reading a tenant's few-shot examples (CSV, JSONL or Parquet) and validating them whole."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.errors import ExamplesError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


@dataclass(frozen=True)
class Examples:
    texts: list[str]
    labels: list[str]

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))


def read_examples(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    intents: Sequence[str] | None = None,
) -> Examples:
    """All rows of the file, or an ExamplesError naming every problem row (first few)."""
    path = Path(path)
    if not path.is_file():
        raise ExamplesError(f"examples file {path} does not exist")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ExamplesError(f"{path}: unknown format {path.suffix!r}; expected one of {', '.join(sorted(FORMATS))}")
    table = _read(path, kind)
    missing = [c for c in (text_column, label_column) if c not in table.column_names]
    if missing:
        raise ExamplesError(
            f"{path}: missing column(s) {missing}; found {table.column_names}. "
            f"Name the columns with --text-column / --label-column"
        )
    if table.num_rows == 0:
        raise ExamplesError(f"{path}: no example rows; a head needs at least one example per intent")
    texts = table.column(text_column).to_pylist()
    labels = table.column(label_column).to_pylist()
    problems: list[str] = []
    for i, (t, lab) in enumerate(zip(texts, labels, strict=True)):
        row = i + 1
        if t is None or not isinstance(t, str):
            problems.append(f"row {row}: text is {'null' if t is None else type(t).__name__}")
        elif not t.strip():
            problems.append(f"row {row}: text is empty")
        if lab is None or (isinstance(lab, str) and not lab.strip()):
            problems.append(f"row {row}: label is {'null' if lab is None else 'empty'}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ExamplesError(f"{path}: {len(problems)} bad row(s): {shown}. Fix or remove those rows")
    examples = Examples([str(t) for t in texts], [str(lab).strip() for lab in labels])
    _check_one_intent_per_text(path, examples)
    if intents is not None:
        empty = sorted(set(intents) - set(examples.labels))
        if empty:
            raise ExamplesError(f"{path}: intent(s) {empty} have zero examples; every intent needs at least one")
    return examples


def _check_one_intent_per_text(path: Path, examples: Examples) -> None:
    """A text under two intents (compared as the uncased tokenizer sees it: case and runs of
    whitespace do not count) is a labelling error: a head learns one intent per text."""
    seen: dict[str, dict[str, int]] = {}
    for row, (text, label) in enumerate(zip(examples.texts, examples.labels, strict=True), start=1):
        seen.setdefault(" ".join(text.split()).casefold(), {}).setdefault(label, row)
    conflicts = [rows for rows in seen.values() if len(rows) > 1]
    if conflicts:
        shown = "; ".join(
            ", ".join(f"row {row} says {label!r}" for label, row in rows.items()) for rows in conflicts[:5]
        ) + (f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        raise ExamplesError(
            f"{path}: {len(conflicts)} text(s) are labelled with more than one intent ({shown}). "
            f"Keep one label per text"
        )


def _read(path: Path, kind: str) -> pa.Table:
    try:
        if kind == "parquet":
            return pq.read_table(path)
        if kind == "csv":
            return _read_csv(path)
        rows = []
        with path.open(encoding="utf-8-sig") as f:  # a byte-order mark (Excel, Notepad) is not data
            for n, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ExamplesError(f"{path}: line {n} is not JSON ({exc.msg})") from None
        if not rows:
            raise ExamplesError(f"{path}: the file is empty; expected one JSON object per line")
        if not all(isinstance(r, dict) for r in rows):
            raise ExamplesError(f'{path}: every line must be a JSON object like {{"text": ..., "label": ...}}')
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ExamplesError(f"{path}: cannot read as {kind}: {exc}") from None


def _read_csv(path: Path) -> pa.Table:
    """A CSV none of whose rows has more fields than the header: an unquoted comma in a text would
    otherwise shift the rest of the row into the label. A short row reads its missing fields as
    null (a missing text or label is then reported as such)."""
    if path.stat().st_size == 0:
        raise ExamplesError(f"{path}: the file is empty; expected a header row and examples")
    with path.open(newline="", encoding="utf-8-sig") as f:  # a byte-order mark (Excel) is not data
        reader = csv.reader(f)
        header = next(reader, [])
        twice = sorted({n for n in header if header.count(n) > 1})
        if twice:
            raise ExamplesError(
                f"{path}: the header names {', '.join(map(repr, twice))} more than once; "
                f"give each column a distinct name"
            )
        rows, problems = [], []
        for fields in reader:
            if not fields:
                continue  # a blank line
            if len(fields) > len(header):
                problems.append(f"line {reader.line_num} has {len(fields)} field(s)")
            rows.append(dict(zip(header, fields, strict=False)))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ExamplesError(
            f"{path}: the header has {len(header)} field(s) ({', '.join(header)}), but {shown}. "
            f'Quote a text that contains a comma, e.g. "I lost my card, help",lost_card'
        )
    return pa.Table.from_pylist(rows, schema=pa.schema([(n, pa.string()) for n in header]))

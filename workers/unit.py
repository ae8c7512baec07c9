"""A work unit: a row range of one input file, cut by the driver's plan, read by an actor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Unit:
    """The rows [start, start + rows) of one file, found in the consecutive ``row_groups`` from
    the ``offset``-th row of the first of them (0 unless a big row group was cut in pieces).
    ``version`` identifies the file's content when it was planned (``parquet_io.file_version``):
    a unit of a file changed since then is refused instead of read."""

    id: str
    uri: str
    row_groups: tuple[int, ...]
    start: int
    rows: int
    offset: int = 0
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uri": self.uri,
            "row_groups": list(self.row_groups),
            "start": self.start,
            "rows": self.rows,
            "offset": self.offset,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Unit:
        return cls(
            d["id"],
            d["uri"],
            tuple(d["row_groups"]),
            int(d["start"]),
            int(d["rows"]),
            int(d.get("offset", 0)),
            str(d.get("version", "")),
        )

"""A work unit: a row range of one input file, cut by the driver's plan, read by an actor."""

from __future__ import annotations

from dataclasses import dataclass, field
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


# What an actor records for each unit it finishes (stored in Redis with the unit's ack).
@dataclass(frozen=True, kw_only=True)
class UnitStats:
    rows: int
    tokens: int
    tokens_kept: int
    read_s: float
    encode_s: float
    head_s: float  # the heads and the row statuses: classification time besides the encoding
    write_s: float
    total_s: float
    statuses: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)  # tenant -> head version used
    actor: str
    node: str
    host: str
    pid: int
    rss_mb: float
    finished: float  # unix time

"""What an actor records for each unit it finishes (stored in Redis with the unit's ack)."""

from __future__ import annotations

from dataclasses import dataclass, field


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

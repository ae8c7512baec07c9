"""The typed schema of a classify job's `_report.json`: written by the driver, read by
`jobs report show|compare` and the benchmarks, always through ``Report.from_dict``/``to_dict``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from jobs.errors import ReportError

REPORT_VERSION = 1
REQUIRED = ("rows", "wall_s", "rows_per_s", "config", "actors")


@dataclass(frozen=True, kw_only=True)
class UnitCounts:
    """Units planned, done, and dead-lettered without being done."""

    total: int
    done: int
    dead: int


@dataclass(frozen=True, kw_only=True)
class RowCounts:
    """Rows planned, written in part files, and in dead units."""

    planned: int
    written: int
    dead: int = 0


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Seconds per unit: median, 95th percentile, worst."""

    p50: float = 0.0
    p95: float = 0.0
    max: float = 0.0  # 0.0 throughout when no unit finished


@dataclass(frozen=True, kw_only=True)
class Share:
    """One actor's or node's share of the job."""

    units: int
    rows: int
    busy_s: float
    encode_s: float
    max_rss_mb: float
    rows_per_s: float  # its share of the job's throughput (rows / job wall time)
    busy_rows_per_s: float  # while working on units
    node: str | None = None  # the actor's node (actors only)


@dataclass(frozen=True, kw_only=True)
class Placement:
    actor: str | None
    node: str | None
    host: str | None
    pid: int | None
    dtype: str | None
    dtype_why: str | None = None  # why the actor runs its dtype on its node (job_dtype_choice)


PLACEMENT_FIELDS = ("actor", "node", "host", "pid", "dtype", "dtype_why")


def _placement(d: dict[str, Any]) -> Placement:
    return Placement(**{k: d.get(k) for k in PLACEMENT_FIELDS})


@dataclass(frozen=True, kw_only=True)
class DeadUnit:
    unit: str
    error: str


@dataclass(frozen=True, kw_only=True)
class Report:
    report_version: int = REPORT_VERSION
    job_id: str | None = None
    finished: str | None = None
    input: str | None = None
    output: str | None = None
    files: int = 0
    empty_files: list[str] = field(default_factory=list)
    units: UnitCounts
    rows: RowCounts
    statuses: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    tokens_kept: int = 0
    tokens_kept_pct: float = 100.0
    wall_s: float
    rows_per_s: float
    time_split_s: dict[str, float] = field(default_factory=dict)
    time_split_pct: dict[str, float] = field(default_factory=dict)
    unit_latency_s: Latency
    actors: dict[str, Share]
    nodes: dict[str, Share] = field(default_factory=dict)
    placement: list[Placement] = field(default_factory=list)
    dead_units: list[DeadUnit] = field(default_factory=list)
    config: dict[str, Any]
    driver_max_rss_mb: float | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.dead_units and self.rows.written == self.rows.planned

    def ran_dtypes(self) -> str:
        """The dtype(s) the actors ran (``--dtype auto`` is resolved per node)."""
        return "/".join(sorted({str(p.dtype) for p in self.placement})) or "unknown"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for group in ("actors", "nodes"):
            d[group] = {k: {n: v for n, v in s.items() if not (n == "node" and v is None)} for k, s in d[group].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "report") -> Report:
        """A report from its JSON object; a ReportError names what is missing or malformed."""
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise ReportError(f"{where}: not a classify job report (missing {', '.join(missing)})")
        known = {f.name for f in fields(cls)}
        try:
            return cls(
                **{
                    **{k: v for k, v in d.items() if k in known},
                    "units": UnitCounts(**d.get("units", {"total": 0, "done": 0, "dead": 0})),
                    "rows": RowCounts(**d["rows"]),
                    "unit_latency_s": Latency(**d.get("unit_latency_s", {})),
                    "actors": {k: Share(**v) for k, v in d["actors"].items()},
                    "nodes": {k: Share(**v) for k, v in d.get("nodes", {}).items()},
                    "placement": [_placement(p) for p in d.get("placement", [])],
                    "dead_units": [DeadUnit(**u) for u in d.get("dead_units", [])],
                }
            )
        except (TypeError, AttributeError) as exc:
            raise ReportError(f"{where}: not a classify job report ({exc})") from exc

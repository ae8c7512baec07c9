"""The classify job's settings: one frozen, keyword-only object that travels unchanged from the
CLI through the driver (and Redis, for --resume) to every actor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from prune.config import DEFAULT_TOKEN_BUDGET, PruneConfig, check_dtype_choice
from prune.errors import ConfigError
from workers.parquet_io import absolute_uri

# Rows per work unit. The encoder sorts a unit's rows by length to batch them with little
# padding; measured here (benchmarks/unit_size.py), 1000-row units encode about 10% slower than
# one sort over all rows, 2000- and 5000-row units within noise of it (docs/performance.md).
# Units stay small enough to balance actors and to lose little work when one dies.
DEFAULT_UNIT_ROWS = 5000


@dataclass(frozen=True)
class Columns:
    text: str = "text"
    tenant: str | None = "tenant"  # a column, or None when one tenant applies to all rows
    id: str | None = None
    fixed_tenant: str | None = None

    def __post_init__(self) -> None:
        if (self.tenant is None) == (self.fixed_tenant is None):
            raise ConfigError("give either a tenant column or one tenant for all rows (--tenant), not both")


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    input: str
    output: str
    columns: Columns = field(default_factory=Columns)
    model: str | None = None
    prune: PruneConfig | None = None
    dtype: str = "auto"  # resolved by each actor for its own node's CPU (EncoderOptions)
    token_budget: int = DEFAULT_TOKEN_BUDGET
    actors: int | None = None  # default: one per node that fits an actor
    cpus_per_actor: int | None = None  # default: 4 on a cluster, min(4, cores) locally
    unit_rows: int = DEFAULT_UNIT_ROWS
    max_attempts: int = 3
    claim_idle_ms: int = 60_000
    rows_per_actor: int | None = None  # rows each actor is expected to encode (the driver's estimate): int8 may pay

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", absolute_uri(self.input))  # stored as resolved at submit
        object.__setattr__(self, "output", absolute_uri(self.output))
        check_dtype_choice(self.dtype)
        for name in ("token_budget", "unit_rows", "max_attempts", "claim_idle_ms"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.rows_per_actor is not None and (not isinstance(self.rows_per_actor, int) or self.rows_per_actor < 0):
            raise ConfigError(f"rows_per_actor must be a non-negative integer or None, got {self.rows_per_actor!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["prune"] = self.prune.to_dict() if self.prune else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        prune = PruneConfig(**d["prune"]) if d.get("prune") else None
        return cls(**{**d, "columns": Columns(**d["columns"]), "prune": prune})


@dataclass(frozen=True, kw_only=True)
class JobAddress:
    """Where an actor finds its job: the Redis that holds the queue and the heads, and the job id."""

    redis_url: str
    prefix: str
    job_id: str

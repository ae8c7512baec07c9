"""Validated, frozen configuration objects for the encoder."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from prune.cpu import native_bf16, native_int8
from prune.errors import ConfigError
from prune.user_files import user_dir

Dtype = Literal["float32", "bfloat16", "int8"]
# int8: static int8 layers (prune.int8), compiled when the encoder loads. ``auto`` means it only
# for a large batch job (job_dtype), never for an encoder on its own
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "int8")
DTYPE_CHOICES: tuple[str, ...] = ("auto", *DTYPES)  # auto: bfloat16 where the CPU runs it natively (prune.cpu)


def check_dtype_choice(dtype: str) -> None:
    """A dtype as a user may ask for it, ``auto`` included."""
    if dtype not in DTYPE_CHOICES:
        raise ConfigError(f"dtype must be one of {DTYPE_CHOICES}, got {dtype!r}")


def resolve_dtype(dtype: str, bf16: bool | None = None) -> Dtype:
    """``auto`` -> bfloat16 where the CPU has native bf16 (``bf16``, default: this CPU), else
    float32; an explicit dtype is kept as it is. The one place where ``auto`` is decided: the
    encoder's options call it, so each actor decides for its own node."""
    check_dtype_choice(dtype)
    if dtype == "auto":
        return "bfloat16" if (native_bf16() if bf16 is None else bf16) else "float32"
    return cast(Dtype, dtype)  # checked above


# Where int8 pays in a job's actor, in rows per encode stream (an actor runs one single-thread
# stream per CPU, all sharing one load): the rows a stream encodes before int8's extra load is paid
# back by its speed over bf16 (benchmarks/int8_load.py; docs/performance.md#int8-load). With its
# graphs already built on the node (prune.int8_store) int8 loads in seconds; built first, in about
# a minute and a half. Both thresholds keep about twice the measured break-even as margin.
INT8_MIN_ROWS_BUILT = 5_000
INT8_MIN_ROWS = 200_000
# Each can be set for a cluster whose figures differ (and, in tests, to force the large-job rule).
MIN_ROWS_ENV = {True: "JOBS_INT8_MIN_ROWS_BUILT", False: "JOBS_INT8_MIN_ROWS"}


def int8_min_rows(built: bool) -> int:
    """The rows per encode stream from which int8 pays: its graphs ``built`` on the node, or to
    build."""
    value = os.environ.get(MIN_ROWS_ENV[built])
    if value is None:
        return INT8_MIN_ROWS_BUILT if built else INT8_MIN_ROWS
    if not value.isdigit():
        raise ConfigError(f"{MIN_ROWS_ENV[built]} must be a whole number of rows, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype an actor asks for, and why: the report's placement says both."""

    dtype: str
    why: str


def job_dtype_choice(
    dtype: str, rows: int | None, *, native: bool | None = None, built: bool = False, problem: str | None = None
) -> DtypeChoice:
    """What a batch job's actor runs. ``auto`` becomes int8 where the CPU has native int8 matmuls
    (``native``, default: this CPU) and each of the actor's encode streams has enough ``rows`` to
    encode for int8's load to pay: INT8_MIN_ROWS_BUILT when its graphs are ``built`` on the node,
    else INT8_MIN_ROWS; and only where int8 can run (``problem``: why not). Otherwise ``auto``
    stays, and resolves as for any encoder (bf16 or fp32). An explicit dtype is kept."""
    check_dtype_choice(dtype)
    if dtype != "auto":
        return DtypeChoice(dtype, "as asked")
    if not (native_int8() if native is None else native):
        return DtypeChoice("auto", "no native int8 matmuls (AMX-INT8 or AVX512-VNNI) on this CPU")
    threshold = int8_min_rows(built)
    state = "built on this node" if built else "to build on this node"
    if rows is None or rows < threshold:
        why = f"{rows or 0:,} rows per stream to encode; int8 (graphs {state}) pays from {threshold:,}"
        return DtypeChoice("auto", why)
    if problem:
        return DtypeChoice("auto", f"int8 would pay for {rows:,} rows per stream but cannot run: {problem}")
    return DtypeChoice("int8", f"{rows:,} rows per stream to encode; int8 (graphs {state}) pays from {threshold:,}")


def job_dtype(dtype: str, rows_per_stream: int | None, int8: bool | None = None) -> str:
    """``job_dtype_choice``'s dtype for int8 graphs still to build."""
    return job_dtype_choice(dtype, rows_per_stream, native=int8).dtype


@dataclass(frozen=True)
class PruneConfig:
    """Post-training token pruning (arXiv 2408.11799).

    After encoder layer ``layer`` (1-based: after ``layer`` layers have run) every sequence
    with ``n > min_tokens`` real tokens keeps ``max(min_tokens, ceil((1 - quantile) * n))``
    tokens: [CLS] and [SEP] always, then the most important ones by ``score``, in their
    original order.
    """

    min_tokens: int
    quantile: float
    layer: int
    score: str = "attention"

    def __post_init__(self) -> None:
        if not isinstance(self.min_tokens, int) or self.min_tokens < 2:
            raise ConfigError(
                f"min_tokens (s) must be an integer >= 2 ([CLS] and [SEP] are always kept), got {self.min_tokens!r}"
            )
        if not 0.0 <= float(self.quantile) < 1.0:
            raise ConfigError(f"quantile (q) must be in [0, 1), got {self.quantile!r}")
        if not isinstance(self.layer, int) or self.layer < 1:
            raise ConfigError(f"layer (l) must be an integer >= 1, got {self.layer!r}")
        if not isinstance(self.score, str) or not self.score:
            raise ConfigError(f"score must be a non-empty name, got {self.score!r}")

    def __str__(self) -> str:
        return f"s={self.min_tokens},q={self.quantile:g},l={self.layer},score={self.score}"

    @classmethod
    def parse(cls, text: str) -> PruneConfig:
        """Parse ``"s=15,q=0.8,l=1"`` (optionally ``,score=norm``)."""
        fields: dict[str, str] = {}
        for part in text.split(","):
            m = re.fullmatch(r"\s*(\w+)\s*=\s*([^\s]+)\s*", part)
            if not m:
                raise ConfigError(
                    f"cannot parse prune config {text!r}: expected 's=INT,q=FLOAT,l=INT' "
                    f"with an optional ',score=NAME', e.g. 's=15,q=0.8,l=1'"
                )
            fields[m.group(1)] = m.group(2)
        aliases = {"min_tokens": "s", "quantile": "q", "layer": "l"}
        fields = {aliases.get(k, k): v for k, v in fields.items()}
        unknown = set(fields) - {"s", "q", "l", "score"}
        missing = {"s", "q", "l"} - set(fields)
        if unknown or missing:
            raise ConfigError(
                f"prune config {text!r}: unknown keys {sorted(unknown)}, missing keys "
                f"{sorted(missing)}; expected 's=INT,q=FLOAT,l=INT[,score=NAME]'"
            )
        try:
            return cls(
                min_tokens=int(fields["s"]),
                quantile=float(fields["q"]),
                layer=int(fields["l"]),
                score=fields.get("score", "attention"),
            )
        except ValueError as exc:
            raise ConfigError(f"prune config {text!r}: {exc}") from exc

    def check_layers(self, num_layers: int) -> None:
        """Pruning happens after a layer that has a layer after it."""
        if not 1 <= self.layer < num_layers:
            raise ConfigError(
                f"prune layer l={self.layer} is out of range for a {num_layers}-layer model; use 1..{num_layers - 1}"
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "min_tokens": self.min_tokens,
            "quantile": self.quantile,
            "layer": self.layer,
            "score": self.score,
        }


# Rows x padded length per batch. Measured with benchmarks/token_budget.py: 1024 keeps a batch's
# activations near the per-core cache, 11-13% faster than 4096 (docs/performance.md).
DEFAULT_TOKEN_BUDGET = 1024


@dataclass(frozen=True)
class EncoderOptions:
    """How the encoder runs: numeric type and batch shape. ``dtype="auto"`` is resolved here, for
    the CPU this runs on."""

    dtype: Dtype = "float32"
    token_budget: int = DEFAULT_TOKEN_BUDGET  # max (rows x padded length) per batch
    max_batch_rows: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", resolve_dtype(self.dtype))
        if not isinstance(self.token_budget, int) or self.token_budget < 1:
            raise ConfigError(f"token_budget must be a positive integer, got {self.token_budget!r}")
        if not isinstance(self.max_batch_rows, int) or self.max_batch_rows < 1:
            raise ConfigError(f"max_batch_rows must be a positive integer, got {self.max_batch_rows!r}")


# The pruning config `jobs tune` chose for a model, one file per model (keyed by the model's
# fingerprint, recorded in each file's provenance), shipped with the package with its provenance.
# `jobs tune --write-default` writes the user's own choice to <JOBS_HOME>/tuned/<fingerprint>.json,
# which then wins over the packaged one for that model (the package itself is never written).
PACKAGED_TUNED_DIR = Path(__file__).with_name("tuned")
PACKAGED_TUNED_FILE = PACKAGED_TUNED_DIR / "all-minilm-l6-v2.json"  # the packaged model's


def user_tuned_file(fingerprint: str) -> Path:
    return user_dir() / "tuned" / f"{fingerprint}.json"


def tuned_record(weights_sha256: str) -> dict[str, Any]:
    """The tuned record of the model whose weights file has this sha256 (each record holds it and
    the model's fingerprint): the user's own, else the packaged one."""
    for folder in (user_dir() / "tuned", PACKAGED_TUNED_DIR):
        for path in sorted(folder.glob("*.json")):
            record = json.loads(path.read_text())
            if record["provenance"].get("weights_sha256") == weights_sha256:
                return cast(dict[str, Any], record)
    raise ConfigError(
        f"no tuned pruning config for the model whose weights have sha256 {weights_sha256[:16]}...: run "
        f"`jobs tune --model MODEL --write-default` for it, or give --prune s=INT,q=FLOAT,l=INT or --prune none"
    )


def tuned_default(model: str | Path | None = None) -> PruneConfig | None:
    """The tuned pruning config of ``model`` (a folder or an installed model's name; default: the
    packaged all-MiniLM-L6-v2), with its data, date and command in its file; None where the search
    found that no pruning pays within its accuracy bound for that model. Found by the sha256 of
    the model's weights file, so a CLI finds it without torch (0.6 s to start, not 3.8 s)."""
    from prune.models.files import weights_sha256

    return tuned_config(tuned_record(weights_sha256(model)))


def tuned_config(record: dict[str, Any]) -> PruneConfig | None:
    cfg = record["config"]
    if cfg is None:
        return None
    return PruneConfig(int(cfg["min_tokens"]), float(cfg["quantile"]), int(cfg["layer"]), str(cfg["score"]))

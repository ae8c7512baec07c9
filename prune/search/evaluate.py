"""Few-shot evaluation of encoder variants: k-shot heads from a support pool, scored on a query split.

Embeddings are computed once per variant for every text any seed or shot count needs, so
seeds and shots cost only the head fits. For datasets with out-of-scope rows (CLINC150), the
threshold comes from training data only: held-out in-scope training examples (after the
largest k in each seed's order) and the training split's out-of-scope rows.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from prune.config import PruneConfig
from prune.encoder import Encoder
from prune.errors import ConfigError
from prune.heads.choice import fit_choice
from prune.heads.head import HEAD_KINDS
from prune.heads.intent_names import MODES as INTENT_NAME_MODES
from prune.heads.intent_names import IntentNames, encode_names
from prune.heads.thresholds import choose_threshold
from prune.labels import OOS_LABEL
from prune.search.data import Split
from prune.search.metrics import classification_metrics, oos_metrics
from prune.search.sampling import after_k, k_shot

METRICS = (
    "accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1",
)


@dataclass(frozen=True)
class Variant:
    """An encoder configuration to compare: ``bf16``, ``fp32:s=15,q=0.8,l=1``, ``bf16:tuned``."""

    name: str
    dtype: str
    prune: PruneConfig | None

    @classmethod
    def parse(cls, text: str, tuned: Callable[[], PruneConfig | None] | None = None) -> Variant:
        dtype_name, _, prune_text = text.partition(":")
        dtypes = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "int8": "int8"}
        if dtype_name not in dtypes:
            raise ConfigError(
                f"encoder variant {text!r}: expected DTYPE[:PRUNE] with DTYPE fp32, bf16 or int8 and PRUNE "
                f"'s=INT,q=FLOAT,l=INT[,score=NAME]', 'tuned' or 'none', e.g. 'bf16:s=15,q=0.8,l=1'"
            )
        prune: PruneConfig | None = None
        if prune_text == "tuned":
            if tuned is None:
                raise ConfigError("no tuned default is available")
            prune = tuned()
        elif prune_text and prune_text != "none":
            prune = PruneConfig.parse(prune_text)
        return cls(text, dtypes[dtype_name], prune)


@dataclass(frozen=True)
class EvalSettings:
    shots: tuple[int, ...] = (1, 2, 3, 5, 10)
    seeds: int = 5
    heads: tuple[str, ...] = ("auto",)
    calibration_per_intent: int = 2
    intent_names: str = "auto"  # as `tenants add --intent-names`: auto joins informative names to the examples

    def __post_init__(self) -> None:
        if not self.shots or min(self.shots) < 1:
            raise ConfigError(f"shots must be positive integers, got {self.shots}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        bad = set(self.heads) - set(HEAD_KINDS)
        if bad or not self.heads:
            raise ConfigError(f"heads must be among {HEAD_KINDS}, got {self.heads}")
        if self.intent_names not in INTENT_NAME_MODES:
            raise ConfigError(f"intent_names must be one of {INTENT_NAME_MODES}, got {self.intent_names!r}")


@dataclass(frozen=True)
class Encoded:
    """A variant's embeddings of the support texts it needs and of the whole query split."""

    support: dict[int, np.ndarray]  # support index -> [D]
    query: np.ndarray  # [Q, D]
    seconds: float  # encode time of the query split
    tokens: int
    tokens_kept: int
    names: IntentNames | None = None  # the support split's intent names, encoded as the support is


def needed_support(support: Split, settings: EvalSettings) -> list[int]:
    kmax = max(settings.shots)
    need: set[int] = set()
    for seed in range(settings.seeds):
        need.update(k_shot(support.labels, kmax, seed))
        if support.has_oos:
            need.update(after_k(support.labels, kmax, settings.calibration_per_intent, seed))
    need.update(i for i, label in enumerate(support.labels) if label == OOS_LABEL)
    return sorted(need)


def encode_for_eval(
    encoder: Encoder, support: Split, query: Split, settings: EvalSettings, support_encoder: Encoder | None = None
) -> Encoded:
    """The queries with ``encoder``; the support with ``support_encoder`` when given (a head built
    by one encoder variant and used by another, as `tenants add` and the job may be)."""
    idx = needed_support(support, settings)
    sup = (support_encoder or encoder).encode([support.texts[i] for i in idx]).embeddings
    q = encoder.encode(query.texts)
    in_scope = [label for label in support.labels if label != OOS_LABEL]
    names = encode_names(support_encoder or encoder, in_scope) if settings.intent_names == "auto" else None
    return Encoded(
        dict(zip(idx, sup, strict=True)), q.embeddings, q.seconds, int(q.tokens.sum()), int(q.tokens_kept.sum()), names
    )


def score_runs(support: Split, query: Split, enc: Encoded, settings: EvalSettings) -> list[dict[str, object]]:
    """One row per (head, k, seed): closed-set metrics on in-scope query rows, plus OOS metrics."""
    in_scope = [i for i, label in enumerate(query.labels) if label != OOS_LABEL]
    y_true = [query.labels[i] for i in in_scope]
    with_oos = query.has_oos and support.has_oos
    oos_support = [i for i, label in enumerate(support.labels) if label == OOS_LABEL]
    kmax = max(settings.shots)
    rows: list[dict[str, object]] = []
    for seed in range(settings.seeds):
        for k in settings.shots:
            s_idx = k_shot(support.labels, k, seed)
            x = np.stack([enc.support[i] for i in s_idx])
            for kind in settings.heads:
                choice = fit_choice(kind, x, [support.labels[i] for i in s_idx], names=enc.names)
                head = choice.head
                pred = head.classify(enc.query)
                labels = [head.labels[j] for j in pred.label_index.tolist()]
                row: dict[str, object] = {"head": kind, "k": k, "seed": seed}
                if choice.names is not None:
                    row["intent_names_used"] = float(choice.names.used)
                row.update(classification_metrics(y_true, [labels[i] for i in in_scope]))
                if with_oos:
                    cal = after_k(support.labels, kmax, settings.calibration_per_intent, seed)
                    t = choose_threshold(
                        head.classify(np.stack([enc.support[i] for i in cal])).score,
                        head.classify(np.stack([enc.support[i] for i in oos_support])).score,
                    )
                    predicted_oos = pred.score < t
                    row.update(oos_metrics([label == OOS_LABEL for label in query.labels], predicted_oos.tolist()))
                    row["in_scope_accuracy_with_threshold"] = float(
                        np.mean([labels[i] == query.labels[i] and not predicted_oos[i] for i in in_scope])
                    )
                    row["oos_threshold"] = t
                rows.append(row)
    return rows


def summarise(rows: Iterable[dict[str, object]]) -> list[dict[str, object]]:
    """Mean and standard deviation over seeds for each (head, k)."""
    groups: dict[tuple[object, object], list[dict[str, object]]] = {}
    for r in rows:
        groups.setdefault((r["head"], r["k"]), []).append(r)
    out = []
    for (head, k), group in sorted(groups.items(), key=lambda g: (str(g[0][0]), int(g[0][1]))):  # type: ignore[call-overload]  # keys are (head, k) of object-typed rows
        summary: dict[str, object] = {"head": head, "k": k, "seeds": len(group)}
        for name in group[0]:
            if name in ("head", "k", "seed"):
                continue
            values = [float(r[name]) for r in group]  # type: ignore[arg-type]  # metric values are floats
            summary[name] = statistics.fmean(values)
            summary[name + "_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
        out.append(summary)
    return out


def evaluate_variant(
    encoder: Encoder, support: Split, query: Split, settings: EvalSettings, support_encoder: Encoder | None = None
) -> tuple[Encoded, list[dict[str, object]]]:
    enc = encode_for_eval(encoder, support, query, settings, support_encoder)
    return enc, summarise(score_runs(support, query, enc, settings))


def in_scope_texts(split: Split, limit: int | None = None) -> Sequence[str]:
    texts = [t for t, label in zip(split.texts, split.labels, strict=True) if label != OOS_LABEL]
    return texts[:limit] if limit else texts

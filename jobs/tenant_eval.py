"""Scoring a tenant's stored head on a labelled sample of its own utterances, as the job would
label them: accuracy, per-intent precision/recall/F1, and the most frequent confusions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prune.heads.head import Head
from prune.labels import OOS_LABEL

OUT_OF_SCOPE = "(out of scope)"


@dataclass(frozen=True)
class IntentScore:
    intent: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class TenantEval:
    rows: int
    accuracy: float
    intents: list[IntentScore]
    confusions: list[tuple[str, str, int]]  # (true, predicted, count), most frequent first
    unknown_labels: list[str]  # labels of the sample that the head does not have

    def render(self, top: int = 10) -> str:
        lines = [f"{self.rows} labelled utterances, accuracy {100 * self.accuracy:.1f}%", ""]
        lines.append(f"{'intent':<32} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}")
        for s in self.intents:
            lines.append(
                f"{s.intent:<32} {100 * s.precision:>8.1f}% {100 * s.recall:>6.1f}% {100 * s.f1:>5.1f}% {s.support:>7}"
            )
        if self.confusions:
            lines += ["", "most frequent confusions (true -> predicted):"]
            lines += [f"  {t} -> {p}: {n}" for t, p, n in self.confusions[:top]]
        if self.unknown_labels:
            lines += ["", f"labels the head does not know (always wrong): {', '.join(self.unknown_labels)}"]
        return "\n".join(lines)


def predictions(head: Head, embeddings: np.ndarray) -> list[str]:
    """What the job would write as the intent, out of scope under the head's threshold."""
    pred = head.classify(embeddings)  # [N] best intent, score, in scope
    return [head.labels[i] if ok else OUT_OF_SCOPE for i, ok in zip(pred.label_index, pred.in_scope, strict=True)]


def evaluate_head(head: Head, embeddings: np.ndarray, labels: Sequence[str]) -> TenantEval:
    from sklearn.metrics import precision_recall_fscore_support

    truth = [OUT_OF_SCOPE if label == OOS_LABEL else label for label in labels]
    predicted = predictions(head, embeddings)
    intents = sorted(set(truth) | set(predicted))
    p, r, f, n = precision_recall_fscore_support(truth, predicted, labels=intents, zero_division=0)
    scores = [
        IntentScore(i, float(a), float(b), float(c), int(d)) for i, a, b, c, d in zip(intents, p, r, f, n, strict=True)
    ]
    confusions = Counter((t, q) for t, q in zip(truth, predicted, strict=True) if t != q)
    return TenantEval(
        rows=len(truth),
        accuracy=float(np.mean([t == q for t, q in zip(truth, predicted, strict=True)])) if truth else 0.0,
        intents=scores,
        confusions=[(t, q, c) for (t, q), c in confusions.most_common()],
        unknown_labels=sorted(set(truth) - set(head.labels) - {OUT_OF_SCOPE}),
    )

"""Intent names as evidence. A tenant's intent names are usually words ("card_arrival"); written
as text ("card arrival") and encoded like an utterance, each name joins its intent's examples as
one more example when the head is fitted. They are used only when they carry signal: the
nearest name must classify a quarter of the tenant's own examples, and beat chance, so opaque
names ("intent_17", codes) are ignored. Reads nothing but the tenant's examples and names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from prune.encoder import Encoder

# Names are used when the nearest name classifies at least MIN_ACCURACY of the examples and
# beats chance at the one-sided binomial p-value SIGNAL_P. Descriptive names are far above both
# (BANKING77's names classify 65-68% of its train examples, CLINC150's 67-68%); opaque ones sit
# at chance; and names shifted one intent along the sorted list (a wrong mapping whose
# neighbours share words, as "calendar" and "calendar_update") classify 3%: beyond chance among
# 150 intents, so significance alone would accept them where nothing can be cross-validated.
SIGNAL_P = 0.01
MIN_ACCURACY = 0.25
MODES = ("auto", "off")  # auto: used when informative; off: never

_SEPARATORS = re.compile(r"[_\-./:|]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def name_text(label: str) -> str:
    """The intent name as an utterance-like text: ``Refund_not_showing_up`` -> ``refund not
    showing up``, ``cardArrival`` -> ``card arrival``."""
    return " ".join(_SEPARATORS.sub(" ", _CAMEL.sub(" ", label)).lower().split())


@dataclass(frozen=True)
class IntentNames:
    """One embedding per intent name, in ``labels`` order."""

    labels: tuple[str, ...]
    embeddings: np.ndarray  # [C, D] the encoded name_text of each label

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.embeddings):
            raise ValueError(f"{len(self.labels)} intent names but {len(self.embeddings)} embeddings")

    def added_to(self, embeddings: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """The examples plus one name row for each intent among ``labels``."""
        present = set(labels)
        keep = [i for i, label in enumerate(self.labels) if label in present]
        x = np.concatenate([embeddings, self.embeddings[keep].astype(embeddings.dtype)])  # [N + C', D]
        return x, [*labels, *(self.labels[i] for i in keep)]


@dataclass(frozen=True)
class NameSignal:
    """How well the names alone classify the tenant's examples (nearest name by cosine)."""

    accuracy: float
    chance: float  # 1 / number of intents
    p_value: float  # one-sided binomial test against chance

    @property
    def informative(self) -> bool:
        return self.accuracy >= MIN_ACCURACY and self.p_value < SIGNAL_P


def name_signal(names: IntentNames, embeddings: np.ndarray, labels: Sequence[str]) -> NameSignal:
    from scipy.stats import binomtest

    unit = names.embeddings / np.linalg.norm(names.embeddings, axis=1, keepdims=True).clip(1e-12)  # [C, D]
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)  # [N, D]
    nearest = (x @ unit.T).argmax(axis=1)  # [N]
    hits = int(sum(names.labels[j] == label for j, label in zip(nearest.tolist(), labels, strict=True)))
    chance = 1.0 / len(names.labels)
    p = binomtest(hits, len(labels), chance, alternative="greater").pvalue if len(names.labels) > 1 else 1.0
    return NameSignal(round(hits / len(labels), 4), round(chance, 4), float(p))


def encode_names(encoder: Encoder, labels: Sequence[str]) -> IntentNames:
    """Each distinct label's ``name_text``, encoded as the examples are (``encoder.encode``)."""
    distinct = tuple(sorted(set(labels)))
    embeddings = np.asarray(encoder.encode([name_text(label) or label for label in distinct]).embeddings)
    return IntentNames(distinct, embeddings.astype(np.float32))  # [C, D]

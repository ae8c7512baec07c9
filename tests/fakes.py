"""A deterministic fake encoder, for unit tests whose subject is not the encoder (the worker,
the classify step, the head cache). Tests of the encoder itself use the real packaged model."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prune.config import EncoderOptions
from prune.encoder import EncodeResult

DIM = 16


def word_vector(word: str) -> np.ndarray:
    """A fixed pseudo-random unit vector per word."""
    seed = int.from_bytes(hashlib.sha1(word.lower().encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@dataclass
class FakeEncoder:
    """Embeds a text as the normalised sum of its words' vectors; `tokens` counts the words plus
    [CLS] and [SEP], and `keep` of them are reported kept (all by default)."""

    fingerprint: str = "fake000000000000"
    keep: int | None = None
    calls: int = 0

    def __post_init__(self) -> None:
        self.options = EncoderOptions(dtype="float32")
        self.prune = None
        self.dim = DIM
        self.empty_tokens = 2

    def encode(self, texts: Sequence[str]) -> EncodeResult:
        self.calls += 1
        start = time.perf_counter()
        emb = np.zeros((len(texts), DIM), np.float32)
        for i, t in enumerate(texts):
            v = sum((word_vector(w) for w in t.replace("\u200b", " ").split()), np.zeros(DIM, np.float32))
            emb[i] = v / max(float(np.linalg.norm(v)), 1e-9)
        tokens = np.array([len(t.replace("\u200b", " ").split()) + 2 for t in texts], np.int32)
        kept = tokens if self.keep is None else np.minimum(tokens, self.keep).astype(np.int32)
        return EncodeResult(emb, tokens, kept, np.zeros(len(texts), bool), time.perf_counter() - start)

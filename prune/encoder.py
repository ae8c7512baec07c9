"""The pruned sentence encoder: tokenise, batch by token budget, run layers, prune, pool."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from prune.batching import token_batches
from prune.config import EncoderOptions, PruneConfig
from prune.errors import Int8Unavailable
from prune.importance import LayerTrace, get_score
from prune.models import build_family
from prune.models import files as model_files
from prune.models.bert import COMPILED_ATTENTION_MAX_TOKENS
from prune.pruning import gather, keep_counts, select

if TYPE_CHECKING:
    from prune.int8 import QuantisedStack
    from prune.int8_store import GraphStore


@dataclass(frozen=True)
class EncodeResult:
    """Embeddings and per-row token accounting, in input order."""

    embeddings: np.ndarray  # [N, D] float32, L2-normalised if the model normalises
    tokens: np.ndarray  # [N] int32 tokens the model saw (after truncation, with [CLS]/[SEP])
    tokens_kept: np.ndarray  # [N] int32 tokens left after pruning (= tokens when unpruned)
    truncated: np.ndarray  # [N] bool: the text was longer than the model's max and was cut
    seconds: float = 0.0  # wall time of the forward passes

    def __len__(self) -> int:
        return len(self.tokens)


def int8_graphs(layers: int, prune: PruneConfig | None, needs_attention: bool) -> list[tuple[int, int, str]]:
    """The int8 graphs a forward can reach, as (start, stop, width class): each run of layers it
    asks for (0-based) in ``Layer.attend``'s short-row branch (up to 32 tokens) and long-row branch,
    less those the pruning rules out. A batch with nothing to prune runs all the layers and is at
    most s tokens wide; one that prunes is wider than s, and runs up to the pruning layer (an
    attention-scored one in fp32, for its probabilities), then the rest at s tokens or more (its
    longest row keeps at least s)."""
    cut = COMPILED_ATTENTION_MAX_TOKENS
    short, long = "short", "long"  # prune.int8_store's width classes: up to cut tokens, and wider
    n = layers
    if prune is None:
        return [(0, n, short), (0, n, long)]
    s = prune.min_tokens
    first = (0, prune.layer - 1) if needs_attention else (0, prune.layer)
    unpruned = [(0, n, short)] + ([(0, n, long)] if s > cut else [])
    pruned = ([(*first, short)] if s < cut else []) + [(*first, long)]
    rest = ([(prune.layer, n, short)] if s <= cut else []) + [(prune.layer, n, long)]
    return [*unpruned, *pruned, *rest]


def int8_store(fingerprint: str, options: EncoderOptions) -> GraphStore:
    """Where the int8 graphs of this model, calibration, CPU and thread count are kept."""
    from prune.int8 import calibration_texts
    from prune.int8_store import GraphStore, cache_root, key

    texts = calibration_texts()
    calibration = json.dumps([texts, options.token_budget, options.max_batch_rows])
    digest = hashlib.sha256(calibration.encode()).hexdigest()[:16]
    return GraphStore(cache_root() / key(fingerprint, digest, torch.get_num_threads()))


@dataclass(frozen=True)
class Int8Readiness:
    """Whether int8 can run here for one model and pruning, and how fast it loads."""

    built: bool  # every graph it needs is in the store: it loads in seconds, without a compiler
    problem: str | None  # why it cannot run here (a graph missing and no compiler, no torchao), or None


def int8_readiness(fingerprint: str, layers: int, prune: PruneConfig | None, options: EncoderOptions) -> Int8Readiness:
    """Checked before any calibration: the store's packages, then (when one is missing) the compiler."""
    from prune.int8 import quantise_available
    from prune.int8_store import CACHE_ENV, compiler_problem

    try:
        quantise_available()
    except Int8Unavailable as exc:
        return Int8Readiness(False, str(exc))
    needs_attention = prune is not None and prune.score not in ("learned",) and get_score(prune.score).needs_attention
    store = int8_store(fingerprint, options)
    missing = [g for g in int8_graphs(layers, prune, needs_attention) if not store.has(*g)]
    if not missing:
        return Int8Readiness(True, None)
    problem = compiler_problem()
    if problem:
        problem = (
            f"{len(missing)} of its graphs are not built in {store.folder} and {problem} to build them: install g++ "
            f"(Debian: apt-get install g++), or build them where one exists (same torch, CPU and threads) and point "
            f"{CACHE_ENV} at them"
        )
    return Int8Readiness(False, problem)


class Encoder:
    """A sentence-transformers model (a family of prune.models) with optional post-training token pruning."""

    def __init__(
        self,
        model: str | Path | None = None,
        prune: PruneConfig | None = None,
        options: EncoderOptions | None = None,
    ) -> None:
        self.spec = model_files.read_spec(model)
        self.config = model_files.load_config(self.spec)
        self.tokenizer = model_files.load_tokenizer(self.spec)
        state = model_files.load_state(self.spec)
        self.fingerprint = model_files.fingerprint(state, self.config, self.spec, self.tokenizer)
        self.options = options or EncoderOptions()
        self.max_length = min(self.spec.max_seq_length, self.config.max_position_embeddings)
        self._set_prune(prune)
        self.bert = build_family(self.config)  # the model family's forward (prune.models)
        self._stack: QuantisedStack | None = None  # int8: the layers run as compiled blocks
        self.bert.load_hf_state(state)
        self.bert.eval().requires_grad_(False)
        if self.options.dtype == "bfloat16":
            self.bert.matmul_weights_to(torch.bfloat16)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.empty_tokens = len(self.tokenizer.encode("").ids)  # what an empty text becomes: [CLS] [SEP]
        if self.options.dtype == "int8":
            self._stack = self._int8_stack()
            for start, stop, width in self._graphs():  # loaded from the store, or built into it now
                self._stack.graph(start, stop, width)

    def _int8_stack(self) -> QuantisedStack:
        """The int8 layers and the store of their graphs. Refuses at once, before any calibration,
        where a graph is missing and cannot be built (no C++ compiler)."""
        from prune.int8 import QuantisedStack, calibration_texts

        ready = int8_readiness(self.fingerprint, self.num_layers, self.prune, self.options)
        if ready.problem:
            raise Int8Unavailable(f"--dtype int8 cannot run here: {ready.problem}; or use --dtype bfloat16 or float32")
        budget, rows = self.options.token_budget, self.options.max_batch_rows

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            ids, _ = self.tokenize(calibration_texts())
            for b in token_batches([len(x) for x in ids], budget, rows):
                yield self._batch_tensors([ids[i] for i in b])[:2]

        return QuantisedStack(self.bert, int8_store(self.fingerprint, self.options), batches)

    def _set_prune(self, prune: PruneConfig | None) -> None:
        if prune is not None:
            prune.check_layers(self.config.num_hidden_layers)
        self.prune = prune
        self._score = None
        if prune is not None and prune.score == "learned":
            from prune.scorer import learned_score

            self._score = learned_score(self.spec.path, self.fingerprint, prune.layer)
        elif prune is not None:
            self._score = get_score(prune.score)

    def with_prune(self, prune: PruneConfig | None) -> Encoder:
        """The same loaded weights with another pruning config (nothing is reloaded)."""
        other = copy.copy(self)
        other._set_prune(prune)
        return other

    @property
    def dim(self) -> int:
        return int(self.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids per text (truncated to the model's max) and which texts were truncated."""
        _check_texts(texts)
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        truncated = np.array([len(e.overflowing) > 0 for e in encodings], dtype=bool)
        return ids, truncated

    def encode(self, texts: Sequence[str]) -> EncodeResult:
        """Embed texts; rows come back in input order whatever the batching."""
        ids, truncated = self.tokenize(texts)
        n = len(ids)
        out = np.zeros((n, self.dim), dtype=np.float32)
        tokens = np.array([len(x) for x in ids], dtype=np.int32)
        kept = tokens.copy()
        start = time.perf_counter()
        batches = token_batches(tokens.tolist(), self.options.token_budget, self.options.max_batch_rows)
        with torch.inference_mode(), self._autocast():
            for batch in batches:
                emb, kept_b = self._forward([ids[i] for i in batch])
                out[batch] = emb
                kept[batch] = kept_b
        return EncodeResult(out, tokens, kept, truncated, time.perf_counter() - start)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.options.dtype == "bfloat16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @staticmethod
    def _batch_tensors(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(r) for r in rows])  # [B]
        width = int(lengths.max())
        ids = torch.zeros((len(rows), width), dtype=torch.long)  # [B, T]
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        mask = torch.arange(width)[None, :] < lengths[:, None]  # [B, T]
        return ids, mask, lengths

    def _graphs(self) -> list[tuple[int, int, str]]:
        """The int8 graphs a forward of this encoder can reach (``int8_graphs``)."""
        score = self._score
        return int8_graphs(self.num_layers, self.prune if score else None, bool(score and score.needs_attention))

    @property
    def _run(self) -> QuantisedStack | Callable[..., tuple[torch.Tensor, torch.Tensor | None]]:
        """What runs a range of layers (``Bert.run``'s signature): the compiled int8 blocks, or the
        eager layers."""
        return self._stack or self.bert.run

    def _forward(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        ids, mask, lengths = self._batch_tensors(rows)  # [B, T], [B, T], [B]
        h = self.bert.embeddings(ids)  # [B, T, D]
        run = self._run
        prune, score, n = self.prune, self._score, self.num_layers
        keep = keep_counts(lengths, prune) if prune is not None else lengths  # [B]
        # A batch in which no row is long enough to lose a token (short utterances) runs exactly the
        # unpruned forward: one run of all the layers, no attention probabilities, no scoring, no gather.
        if prune is None or score is None or not bool((keep < lengths).any()):
            h, _ = run(h, mask, 0, n)
            return self._embed(h, mask).numpy(), lengths.numpy().astype(np.int32)
        h, probs = run(h, mask, 0, prune.layer, need_probs=score.needs_attention)
        importance = score(LayerTrace(h, mask, probs))  # [B, T]
        index = select(importance, mask, keep)  # [B, T']: the kept tokens' original positions
        h, mask = gather(h, index, keep)  # [B, T', D], [B, T']
        h, _ = run(h, mask, prune.layer, n, positions=index)  # the kept tokens where they were (MPNet's bias)
        return self._embed(h, mask).numpy(), mask.sum(1).numpy().astype(np.int32)

    def _embed(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = _pool(h.float(), mask, self.spec.pooling)  # [B, D]
        return F.normalize(pooled, p=2, dim=1) if self.spec.normalize else pooled

    def hidden_states(self, texts: Sequence[str]) -> Iterator[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]]:
        """Unpruned, per batch: the hidden states after each layer (index 0 = embeddings), each
        [B, T, D] fp32, the mask [B, T], and the sentence embeddings [B, D]."""
        ids_all, _ = self.tokenize(texts)
        lengths = [len(x) for x in ids_all]
        with torch.inference_mode(), self._autocast():
            for batch in token_batches(lengths, self.options.token_budget, self.options.max_batch_rows):
                ids, mask, _ = self._batch_tensors([ids_all[i] for i in batch])
                h = self.bert.embeddings(ids)
                states = [h.float()]
                for i in range(self.num_layers):
                    h, _ = self._run(h, mask, i, i + 1)
                    states.append(h.float())
                yield states, mask, self._embed(h, mask)


def _pool(h: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    # h [B, T, D], mask [B, T] -> [B, D]
    m = mask[:, :, None].to(h.dtype)
    if mode == "cls":
        return h[:, 0]
    if mode == "max":
        return h.masked_fill(~mask[:, :, None], float("-inf")).max(1).values
    summed = (h * m).sum(1)
    count = m.sum(1).clamp(min=1e-9)
    return summed / (count.sqrt() if mode == "mean_sqrt_len" else count)


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, got a single str; wrap it in a list")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"texts[{i}] is {type(t).__name__} ({t!r:.40}), expected str; "
                f"convert the value to text or drop the row before encoding"
            )

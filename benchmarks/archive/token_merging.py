"""Dropping the pruned tokens (what the encoder does) against merging them into the kept ones,
in few-shot accuracy on train/valid tasks only (BANKING77 train halves, CLINC150 train -> valid;
never test). Issue 20 asked whether keeping the dropped tokens' information lets a config prune
harder at the same accuracy.

At the pruning layer, every real token is assigned to its most similar kept token (cosine of
the layer's outputs; a kept token to itself). Modes:

- ``drop``: the shipped forward (the kept tokens, a plain mean at the end).
- ``merge``: each kept token becomes the mean of the tokens assigned to it, and the final mean
  is weighted by how many tokens each stands for (ToMe-style size-weighted pooling).
- ``merge+prop``: as ``merge``, plus proportional attention in the later layers (log size added
  to the attention logits of each key), as in ToMe.
- ``exit``: every dropped token leaves the forward at the pruning layer but stays in the final
  mean: its layer-``l`` state goes through a linear map to the last layer's space (ridge
  regression of unpruned last-layer token states on layer-``l`` ones). The map is fitted on the
  *other* dataset's train texts, unlabelled, so it has never seen the task's domain.

The linear head (C=30) is fitted on k examples per intent and scored as `jobs eval` scores it
(``prune.search.evaluate.score_runs``), mean over seeds.

    .venv/bin/python benchmarks/token_merging.py --config s=8,q=0.5,l=1,score=norm \\
        --config s=4,q=0.5,l=1,score=norm --out benchmarks/results/token_merging.json
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from results_io import write_record

from prune import Encoder, EncoderOptions
from prune.batching import token_batches
from prune.config import PruneConfig
from prune.importance import LayerTrace
from prune.pruning import gather, keep_counts, select
from prune.search.data import DEFAULT_DATA_DIR, load_split
from prune.search.evaluate import Encoded, EvalSettings, needed_support, score_runs, summarise
from prune.search.tune import TaskSet, search_tasks

MODES = ("drop", "merge", "merge+prop", "exit")
ExitMap = tuple[torch.Tensor, torch.Tensor]  # W [D, D], b [D]: layer-l token state -> last layer's


def assign(
    h: torch.Tensor, mask: torch.Tensor, index: torch.Tensor, narrow: torch.Tensor, nmask: torch.Tensor
) -> torch.Tensor:
    """h [B, T, D] layer output, mask [B, T], index [B, T'] kept positions, and what ``gather``
    made of them (narrow [B, T', D], nmask [B, T']) -> [B, T]: the slot (0..T'-1) of the kept
    token each token is merged into (a kept token's own slot)."""
    sim = F.normalize(h, dim=-1) @ F.normalize(narrow, dim=-1).transpose(1, 2)  # [B, T, T']
    target = sim.masked_fill(~nmask[:, None, :], -2.0).argmax(-1)  # [B, T]
    own = torch.full(mask.shape, -1, dtype=torch.long)  # [B, T] slot of each kept position
    own.scatter_(1, index, torch.arange(index.shape[1]).expand_as(index).clone())
    kept = torch.zeros_like(mask).scatter_(1, index, nmask)  # [B, T] bool
    return torch.where(kept, own, target)


def fit_exit_map(encoder: Encoder, texts: list[str], layer: int, ridge: float = 1.0) -> ExitMap:
    """Least squares (ridge) from the layer-``layer`` states of the unpruned forward to its last
    layer's states, over every token but [CLS] and [SEP] of ``texts``."""
    xs, ys = [], []
    for states, mask, _ in encoder.hidden_states(texts):
        inner = mask.clone()  # [B, T]
        n = mask.sum(1)
        inner[:, 0] = False
        inner[torch.arange(len(n)), n - 1] = False
        xs.append(states[layer][inner])  # [M, D]
        ys.append(states[-1][inner])  # [M, D]
    x, y = torch.cat(xs).double(), torch.cat(ys).double()
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)  # [M, D + 1], the bias as a column
    gram = x1.T @ x1 + ridge * torch.diag(torch.cat([torch.ones(x.shape[1]), torch.zeros(1)])).double()
    w = torch.linalg.solve(gram, x1.T @ y)  # [D + 1, D]
    return w[:-1].float(), w[-1].float()


def forward(
    encoder: Encoder, rows: list[list[int]], mode: str, exit_map: ExitMap | None = None
) -> tuple[np.ndarray, int]:
    """Embeddings [B, D] of one batch, and the tokens kept after the pruning layer."""
    ids, mask, lengths = encoder._batch_tensors(rows)  # [B, T], [B, T], [B]
    h = encoder.bert.embeddings(ids)  # [B, T, D]
    prune, score = encoder.prune, encoder._score
    assert prune is not None and score is not None
    keep = keep_counts(lengths, prune)  # [B]
    size = mask.float()  # [B, T] tokens each position stands for
    keys: torch.Tensor = mask  # bool, or a float bias on the attention logits
    exited = torch.zeros(len(rows), encoder.dim)  # [B, D] sum of the mapped states of dropped tokens
    for depth, layer in enumerate(encoder.bert.layers, start=1):
        at = depth == prune.layer
        h, probs = layer(h, keys, need_probs=at and score.needs_attention)
        if not at:
            continue
        index = select(score(LayerTrace(h, mask, probs)), mask, keep)  # [B, T']
        if mode == "exit":
            assert exit_map is not None
            kept = torch.zeros_like(mask).scatter_(1, index, torch.arange(index.shape[1]) < keep[:, None])
            dropped = (mask & ~kept)[:, :, None]  # [B, T, 1]
            exited = ((h.float() @ exit_map[0] + exit_map[1]) * dropped).sum(1)  # [B, D]
            size = mask.float()  # every real token counts in the final mean
        if mode in ("drop", "exit"):
            h, mask = gather(h, index, keep)
            keys = mask
            if mode == "drop":
                size = mask.float()
            continue
        hf = h.float()
        narrow, nmask = gather(hf, index, keep)  # [B, T', D], [B, T']
        target = assign(hf, mask, index, narrow, nmask)  # [B, T]
        w = mask.float()  # [B, T]
        total = torch.zeros_like(narrow)  # [B, T', D]
        total.scatter_add_(1, target[:, :, None].expand(-1, -1, hf.shape[2]), hf * w[:, :, None])
        mask = nmask
        size = torch.zeros(mask.shape).scatter_add_(1, target, w) * mask  # [B, T']
        h = (total / size.clamp(min=1)[:, :, None]).to(h.dtype)
        keys = mask
        if mode == "merge+prop":
            keys = torch.where(mask, size.clamp(min=1).log(), torch.tensor(float("-inf")))  # [B, T']
    if mode == "exit":  # the kept tokens' last states and the dropped ones' mapped states, one mean
        pooled = ((h.float() * mask[:, :, None]).sum(1) + exited) / size.sum(1, keepdim=True)  # [B, D]
        return F.normalize(pooled, dim=1).numpy(), int(mask.sum())
    weight = size if mode != "drop" else mask.float()  # [B, T']
    pooled = (h.float() * weight[:, :, None]).sum(1) / weight.sum(1, keepdim=True)  # [B, D]
    return F.normalize(pooled, dim=1).numpy(), int(mask.sum())


def encode(encoder: Encoder, texts: list[str], mode: str, exit_map: ExitMap | None = None) -> tuple[np.ndarray, float]:
    """[N, D] embeddings in input order, and the share of tokens kept."""
    ids, _ = encoder.tokenize(texts)
    tokens = [len(x) for x in ids]
    out = np.zeros((len(ids), encoder.dim), np.float32)
    kept = 0
    with torch.inference_mode(), encoder._autocast():
        for batch in token_batches(tokens, encoder.options.token_budget, encoder.options.max_batch_rows):
            out[batch], k = forward(encoder, [ids[i] for i in batch], mode, exit_map)
            kept += k
    return out, kept / sum(tokens)


def scores(
    encoder: Encoder, mode: str | None, task: TaskSet, settings: EvalSettings, exit_map: ExitMap | None = None
) -> tuple[dict[int, float], float]:
    """Accuracy per k (in %, mean over seeds, as `jobs eval` scores it) on the task's queries,
    and the share of tokens kept; mode None: the shipped encoder's own path."""
    used = needed_support(task.support, settings)
    texts = [task.support.texts[i] for i in used]
    if mode is None:
        support, query, kept = encoder.encode(texts).embeddings, encoder.encode(task.query.texts).embeddings, 1.0
    else:
        support = encode(encoder, texts, mode, exit_map)[0]
        query, kept = encode(encoder, task.query.texts, mode, exit_map)
    enc = Encoded(dict(zip(used, support, strict=True)), query, 0.0, 0, 0)
    rows = summarise(score_runs(task.support, task.query, enc, settings))
    return {int(r["k"]): 100 * float(r["accuracy"]) for r in rows}, kept  # type: ignore[arg-type]


@click.command()
@click.option("--config", "configs", multiple=True, required=True, help="A pruning config, e.g. s=8,q=0.5,l=1.")
@click.option("--shots", default="5,10", show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--dtype", default="auto", show_default=True)
@click.option("--mode", "modes", multiple=True, type=click.Choice(MODES), default=MODES, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(
    configs: tuple[str, ...], shots: str, seeds: int, dtype: str, modes: tuple[str, ...], out: Path | None
) -> None:
    ks = tuple(int(k) for k in shots.split(","))
    settings = EvalSettings(ks, seeds, ("linear",), intent_names="off")
    base = Encoder(options=EncoderOptions(dtype=dtype))
    results: list[dict[str, object]] = []
    for task in search_tasks(DEFAULT_DATA_DIR, ("banking77", "clinc150"), query_per_intent=30):
        unpruned = scores(base, None, task, settings)[0]
        print(f"{task.dataset} unpruned " + ", ".join(f"{k}-shot {v:.2f}" for k, v in unpruned.items()), flush=True)
        other = "clinc150" if task.dataset == "banking77" else "banking77"
        for config in configs:
            prune = PruneConfig.parse(config)
            encoder = base.with_prune(prune)
            exit_map = None
            if "exit" in modes:
                exit_map = fit_exit_map(base, load_split(DEFAULT_DATA_DIR, other, "train").texts, prune.layer)
            for mode in modes:
                acc, kept = scores(encoder, mode, task, settings, exit_map)
                change = {k: round(acc[k] - unpruned[k], 2) for k in ks}
                print(f"{task.dataset} {config} {mode}: tokens kept {kept:.3f}, accuracy change {change}", flush=True)
                row = {"dataset": task.dataset, "config": config, "mode": mode, "tokens_kept": kept}
                results.append({**row, "accuracy": acc, "unpruned": unpruned})
    write_record(out, {"dtype": base.options.dtype, "seeds": seeds, "results": results})


if __name__ == "__main__":
    main()

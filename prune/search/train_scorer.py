"""Training the learned token scorer (score=learned) on unlabelled texts: see prune.scorer."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors.torch import save_file

from prune.scorer import TokenScorer


def _collect(encoder, texts: Sequence[str]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per layer 1..N-1, the hidden states of every non-special token [M, D]; targets [M]; sentence ids [M]."""
    feats: list[list[torch.Tensor]] = [[] for _ in range(encoder.num_layers - 1)]
    targets, groups = [], []
    sentence = 0
    for states, mask, emb in encoder.hidden_states(texts):
        n = mask.sum(1)  # [B]
        c = (states[-1] * emb[:, None, :]).sum(-1) / n[:, None]  # [B, T] contribution to the embedding
        inner = mask.clone()
        inner[:, 0] = False
        inner[torch.arange(len(n)), n - 1] = False  # [CLS] and [SEP] are always kept: not ranked
        for layer in range(1, encoder.num_layers):
            feats[layer - 1].append(states[layer][inner])
        targets.append(c[inner])
        groups.append((torch.arange(len(n))[:, None].expand_as(inner) + sentence)[inner])
        sentence += len(n)
    return [torch.cat(f) for f in feats], torch.cat(targets), torch.cat(groups)


def _segment_log_softmax(x: torch.Tensor, seg: torch.Tensor, nseg: int) -> torch.Tensor:
    top = torch.full((nseg,), float("-inf")).scatter_reduce(0, seg, x, "amax")
    z = x - top[seg]
    return z - torch.zeros(nseg).index_add(0, seg, z.exp()).log()[seg]


def _zscore(x: torch.Tensor, seg: torch.Tensor, nseg: int) -> torch.Tensor:
    count = torch.zeros(nseg).index_add(0, seg, torch.ones_like(x)).clamp(min=1)
    mean = torch.zeros(nseg).index_add(0, seg, x) / count
    var = torch.zeros(nseg).index_add(0, seg, (x - mean[seg]) ** 2) / count
    return (x - mean[seg]) / (var.sqrt()[seg] + 1e-6)


def listnet_loss(pred: torch.Tensor, target_z: torch.Tensor, seg: torch.Tensor, nseg: int) -> torch.Tensor:
    p = _segment_log_softmax(target_z, seg, nseg).exp()
    return -(p * _segment_log_softmax(pred, seg, nseg)).sum() / nseg


def train_scorers(
    encoder,
    texts: Sequence[str],
    out: Path,
    steps: int = 300,
    hidden: int = 64,
    seed: int = 0,
    log=print,
) -> dict[str, float]:
    """Train one scorer per layer 1..N-1 on unlabelled texts; returns held-out losses per layer."""
    torch.manual_seed(seed)
    texts = list(texts)
    random.Random(seed).shuffle(texts)
    feats, target, seg = _collect(encoder, texts)
    nseg = int(seg.max()) + 1
    z = _zscore(target, seg, nseg)
    held = seg % 10 == 0  # 10% of the sentences for a held-out check
    ids_tr = torch.unique(seg[~held], return_inverse=True)[1]
    ids_te = torch.unique(seg[held], return_inverse=True)[1]
    n_tr, n_te = int(ids_tr.max()) + 1, int(ids_te.max()) + 1
    state: dict[str, torch.Tensor] = {}
    report: dict[str, float] = {}
    for layer, x in enumerate(feats, start=1):
        scorer = TokenScorer(x.shape[1], hidden)
        opt = torch.optim.Adam(scorer.parameters(), lr=3e-3)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad()
                loss = listnet_loss(scorer(x[~held]), z[~held], ids_tr, n_tr)
                loss.backward()
                opt.step()
        with torch.no_grad():
            test = float(listnet_loss(scorer(x[held]), z[held], ids_te, n_te))
            norm = float(listnet_loss(x[held].norm(dim=-1), z[held], ids_te, n_te))
            floor = float(listnet_loss(z[held], z[held], ids_te, n_te))
        report[f"layer{layer}"] = test
        log(f"layer {layer}: held-out ListNet loss {test:.4f} (hidden-norm ranking {norm:.4f}, perfect {floor:.4f})")
        state.update({f"layer{layer}.{k}": v.detach().contiguous() for k, v in scorer.state_dict().items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        state,
        str(out),
        metadata={
            "fingerprint": encoder.fingerprint,
            "dim": str(encoder.dim),
            "hidden": str(hidden),
            "target": "contribution to the final pooled embedding, z-scored per sentence",
            "texts": str(len(texts)),
            "tokens": str(len(target)),
            "steps": str(steps),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    return report

"""A learned token ranking for pruning (the ToP idea, without task training).

ToP (arXiv 2306.14393) shows that early-layer attention ranks tokens poorly. Here a tiny MLP
reads a token's layer-``l`` hidden state and predicts how much the token contributes to the
*final* sentence embedding: for a token j with final hidden state h_j, the pooled and
normalised embedding e and n real tokens, ``c_j = <h_j, e> / n`` (the c_j sum to the length of
the mean along e, so a token with a small c_j moves the embedding least). It is trained only
on unlabelled texts, with a listwise loss (ListNet: per-sentence softmax of the z-scored
targets against the softmax of the predictions), one scorer per possible pruning layer, and
stored in one safetensors file keyed by the model fingerprint: beside the model
(``<model>/token_scorer.safetensors``), in the user's folder (``jobs train-scorer``'s default
output, ``<JOBS_HOME>/scorers/<fingerprint>.safetensors``) or shipped in
``prune/scorers/<fingerprint>.safetensors``. Training lives in ``prune.search.train_scorer``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from prune.errors import ConfigError
from prune.importance import ImportanceScore, LayerTrace
from prune.user_files import user_dir

PACKAGED_DIR = Path(__file__).with_name("scorers")
BESIDE_MODEL = "token_scorer.safetensors"


class TokenScorer(nn.Module):
    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h.float()).squeeze(-1)  # [..., D] -> [...]


def user_scorer_path(fingerprint: str) -> Path:
    """Where `jobs train-scorer` writes by default."""
    return user_dir() / "scorers" / f"{fingerprint}.safetensors"


def scorer_path(model_dir: Path, fingerprint: str) -> Path | None:
    """The scorer for this model: beside it, then the user's folder, then the packaged one."""
    candidates = (
        Path(model_dir) / BESIDE_MODEL,
        user_scorer_path(fingerprint),
        PACKAGED_DIR / f"{fingerprint}.safetensors",
    )
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def learned_score(model_dir: Path, fingerprint: str, layer: int) -> ImportanceScore:
    """The trained scorer for this model and layer, as an importance score."""
    path = scorer_path(model_dir, fingerprint)
    if path is None:
        raise ConfigError(
            f"no learned token scorer for model {fingerprint}: train one with "
            f"`jobs train-scorer --model {model_dir}` (or use score=attention / score=norm)"
        )
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("fingerprint") != fingerprint:
        raise ConfigError(f"{path} was trained for model {meta.get('fingerprint')}, not {fingerprint}; retrain it")
    state = load_file(str(path))
    prefix = f"layer{layer}."
    mine = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if not mine:
        raise ConfigError(f"{path} has no scorer for layer {layer}; layers: {sorted({k.split('.')[0] for k in state})}")
    scorer = TokenScorer(int(meta["dim"]), int(meta["hidden"]))
    scorer.load_state_dict(mine)
    scorer.eval().requires_grad_(False)

    def score(trace: LayerTrace) -> torch.Tensor:
        return scorer(trace.hidden)  # [B, T]

    return ImportanceScore("learned", False, score, f"learned scorer ({path.name}), layer {layer}")

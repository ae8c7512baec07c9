"""Loading model directories: fingerprint, layouts, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from prune import Encoder, ModelError
from prune.models.files import read_spec

pytestmark = pytest.mark.system  # the real packaged model's files


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_spec_of_packaged_model(model_dir: Path) -> None:
    spec = read_spec(model_dir)
    assert (spec.pooling, spec.normalize, spec.max_seq_length) == ("mean", True, 256)


def test_fingerprint_independent_of_path_and_sensitive_to_weights(
    encoder: Encoder, model_dir: Path, tmp_path: Path
) -> None:
    copy = copy_model(model_dir, tmp_path / "copy")
    assert Encoder(copy).fingerprint == encoder.fingerprint
    state = load_file(str(copy / "model.safetensors"))
    state["encoder.layer.0.output.dense.bias"] = state["encoder.layer.0.output.dense.bias"] + 0.01
    save_file(state, str(copy / "model.safetensors"))
    assert Encoder(copy).fingerprint != encoder.fingerprint


def test_bert_prefixed_weights_load_the_same(encoder: Encoder, model_dir: Path, tmp_path: Path) -> None:
    copy = copy_model(model_dir, tmp_path / "prefixed")
    state = load_file(str(copy / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in state.items()}, str(copy / "model.safetensors"))
    a = Encoder(copy).encode(["where is my card"]).embeddings
    b = encoder.encode(["where is my card"]).embeddings
    assert np.abs(a - b).max() == 0.0


def test_cls_pooling_without_normalize(model_dir: Path, tmp_path: Path) -> None:
    copy = copy_model(model_dir, tmp_path / "cls")
    pool = json.loads((copy / "1_Pooling" / "config.json").read_text())
    pool.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (copy / "1_Pooling" / "config.json").write_text(json.dumps(pool))
    modules = [m for m in json.loads((copy / "modules.json").read_text()) if "Normalize" not in m["type"]]
    (copy / "modules.json").write_text(json.dumps(modules))
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(copy), device="cpu").encode(["lost my card", "exchange rates?"])
    ours = Encoder(copy).encode(["lost my card", "exchange rates?"]).embeddings
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0)
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.9999
    assert np.allclose(ours, ref, atol=1e-4)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Encoder(tmp_path / "nope")


def test_missing_weights(model_dir: Path, tmp_path: Path) -> None:
    copy = copy_model(model_dir, tmp_path / "noweights")
    (copy / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"no model\.safetensors"):
        Encoder(copy)


def test_unsupported_module(model_dir: Path, tmp_path: Path) -> None:
    copy = copy_model(model_dir, tmp_path / "dense")
    modules = json.loads((copy / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelError, match=r"Dense.*not supported"):
        Encoder(copy)


def test_unsupported_model_type(model_dir: Path, tmp_path: Path) -> None:
    copy = copy_model(model_dir, tmp_path / "gpt")
    cfg = json.loads((copy / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError):
        Encoder(copy)


def test_pytorch_bin_weights(encoder: Encoder, model_dir: Path, tmp_path: Path) -> None:
    copy = copy_model(model_dir, tmp_path / "bin")
    state = load_file(str(copy / "model.safetensors"))
    torch.save(state, copy / "pytorch_model.bin")
    (copy / "model.safetensors").unlink()
    assert Encoder(copy).fingerprint == encoder.fingerprint


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_size": "384"}, r"hidden_size is '384', expected a value of type int"),
        ({"position_embedding_type": "relative_key"}, "only 'absolute'"),
    ],
)
def test_bad_config_values(model_dir: Path, tmp_path: Path, change: dict[str, object], message: str) -> None:
    copy = copy_model(model_dir, tmp_path / "badcfg")
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(ModelError, match=message):
        Encoder(copy)


def test_malformed_tokenizer_file(model_dir: Path, tmp_path: Path) -> None:
    copy = copy_model(model_dir, tmp_path / "badtok")
    (copy / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read the tokenizer"):
        Encoder(copy)


def test_vocabulary_only_directory_tokenizes_the_same(encoder: Encoder, model_dir: Path, tmp_path: Path) -> None:
    """Without tokenizer.json the vocabulary is converted to a fast tokenizer (by transformers)."""
    copy = copy_model(model_dir, tmp_path / "vocab")
    (copy / "tokenizer.json").unlink()
    texts = ["Where is my card?", "Ünïcode àccents and 12,345.67 numbers", "x" * 50]
    assert Encoder(copy).tokenize(texts)[0] == encoder.tokenize(texts)[0]

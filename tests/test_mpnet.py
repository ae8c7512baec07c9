"""MPNet in the project's own forward (prune/models/mpnet.py), against transformers' MPNetModel on
a small randomly initialised MPNet built here: no download. The packaged model's folder lends
its tokenizer, pooling and normalisation; config.json and the weights are the random MPNet's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from prune import Encoder
from prune.config import EncoderOptions, PruneConfig
from prune.models.files import default_model_dir, read_spec
from prune.models.mpnet import MPNet
from prune.pruning import keep_counts, select
from tests.conftest import USER_DATA_DIR

pytestmark = pytest.mark.system  # transformers' MPNetModel and the packaged tokenizer

TEXTS = [
    "where is my card",
    "I was charged twice for the same coffee this morning, can you refund one of the two payments please",
    "hi",
    "how long does a transfer from abroad take to arrive in my account, it has been three days now",
    # over 64 tokens: the fused attention kernel, with the bias as its float mask
    " ".join(["my card was declined at the shop again although the app shows enough money"] * 6),
]


@pytest.fixture(scope="module")
def mpnet_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    from safetensors.torch import save_file
    from transformers import MPNetConfig, MPNetModel

    root = tmp_path_factory.mktemp("mpnet") / "model"
    shutil.copytree(default_model_dir(), root)
    folder = read_spec(root).transformer_path
    for name in ("model.safetensors", "pytorch_model.bin"):
        (folder / name).unlink(missing_ok=True)
    config = dict(
        vocab_size=30527,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=514,
        layer_norm_eps=1e-5,
        relative_attention_num_buckets=32,
        hidden_act="gelu",
    )
    torch.manual_seed(0)
    model = MPNetModel(MPNetConfig(**config)).eval()
    with torch.no_grad():  # as trained models have: else every token's norm is sqrt(D) after a LayerNorm
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    (folder / "config.json").write_text(json.dumps({"model_type": "mpnet", **config}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return root, model


def reference(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    """transformers' MPNetModel on one unpadded row, mean-pooled and normalised."""
    with torch.no_grad():
        h = model(input_ids=torch.tensor([ids])).last_hidden_state[0]  # [T, D]
    e = h.mean(0)
    return (e / e.norm()).numpy()


def test_mpnet_matches_transformers_on_every_row_in_fp32(mpnet_dir: tuple[Path, torch.nn.Module]) -> None:
    root, model = mpnet_dir
    enc = Encoder(root, None, EncoderOptions(dtype="float32"))
    got = enc.encode(TEXTS).embeddings  # [N, D], padded batches
    ids, _ = enc.tokenize(TEXTS)
    for i, row in enumerate(ids):
        assert float(got[i] @ reference(model, row)) >= 0.9999, TEXTS[i]


def test_mpnet_in_bf16_stays_close_to_fp32(mpnet_dir: tuple[Path, torch.nn.Module]) -> None:
    root, _ = mpnet_dir
    fp32 = Encoder(root, None, EncoderOptions(dtype="float32")).encode(TEXTS).embeddings
    bf16 = Encoder(root, None, EncoderOptions(dtype="bfloat16")).encode(TEXTS).embeddings
    assert float((fp32 * bf16).sum(1).min()) >= 0.99


def test_the_position_bias_of_kept_tokens_is_their_part_of_the_full_one(
    mpnet_dir: tuple[Path, torch.nn.Module],
) -> None:
    root, _ = mpnet_dir
    model = Encoder(root).bert
    assert isinstance(model, MPNet)
    full = model.bias(torch.arange(40)[None])  # [1, H, 40, 40]
    kept = torch.tensor([[0, 3, 4, 17, 30, 39]])  # original positions after pruning
    assert torch.equal(model.bias(kept), full[:, :, kept[0]][:, :, :, kept[0]])


def test_pruned_mpnet_matches_transformers_layers_given_the_kept_positions(
    mpnet_dir: tuple[Path, torch.nn.Module],
) -> None:
    """Layers 1..l on all tokens, then the kept tokens (by the norm of layer l's output) through
    layers l+1..N with transformers' own bias for their original positions."""
    root, model = mpnet_dir
    prune = PruneConfig(min_tokens=4, quantile=0.5, layer=2, score="norm")
    enc = Encoder(root, prune, EncoderOptions(dtype="float32"))
    got = enc.encode(TEXTS)
    ids, _ = enc.tokenize(TEXTS)
    layers = model.encoder.layer
    with torch.no_grad():
        for i, row in enumerate(ids):
            x = torch.tensor([row])
            h = model.embeddings(input_ids=x)  # [1, T, D]
            bias = model.encoder.compute_position_bias(h)  # [1, H, T, T]
            for layer in layers[: prune.layer]:
                h = layer(h, None, bias)[0]
            n = torch.tensor([len(row)])
            keep = keep_counts(n, prune)
            index = select(h.norm(dim=-1), torch.ones(1, len(row), dtype=torch.bool), keep)  # [1, T']
            h = h[:, index[0]]
            # transformers' compute_position_bias takes position_ids but fails on them (its permute
            # assumes no batch axis): its own bucket function and bias table, for the kept positions
            relative = index[:, None, :] - index[:, :, None]  # [1, T', T']: key - query
            buckets = model.encoder.relative_position_bucket(relative, num_buckets=32)
            bias = model.encoder.relative_attention_bias(buckets).permute(0, 3, 1, 2)  # [1, H, T', T']
            for layer in layers[prune.layer :]:
                h = layer(h, None, bias)[0]
            e = h[0].mean(0)
            assert int(got.tokens_kept[i]) == int(keep[0])
            assert float(got.embeddings[i] @ (e / e.norm()).numpy()) >= 0.9999, TEXTS[i]
    assert (got.tokens_kept < got.tokens).any()  # some rows lost tokens


def test_mpnet_in_int8_stays_close_to_fp32_pruned_or_not(mpnet_dir: tuple[Path, torch.nn.Module]) -> None:
    """The int8 graphs of an MPNet compute its position bias inside, from the kept tokens' original
    positions: pruned after layer 2 (the int8 graphs on both sides), short and long rows (both
    attention forms of the graphs). Each graph is built here (seconds each), so one config."""
    root, _ = mpnet_dir
    for prune in (PruneConfig(4, 0.5, 2, "norm"),):
        fp32 = Encoder(root, prune, EncoderOptions(dtype="float32")).encode(TEXTS)
        int8 = Encoder(root, prune, EncoderOptions(dtype="int8")).encode(TEXTS)
        cos = (fp32.embeddings * int8.embeddings).sum(1)  # [N]
        assert float(cos.min()) >= 0.98, (prune, cos)
        assert (int8.tokens_kept == fp32.tokens_kept).all()


REAL = USER_DATA_DIR / "models" / "all-mpnet-base-v2"


@pytest.mark.skipif(not (REAL / "modules.json").exists(), reason="run `jobs models install all-mpnet-base-v2` first")
def test_all_mpnet_base_v2_matches_sentence_transformers_when_installed(banking_texts: list[str]) -> None:
    """The real weights (about 400 MB, installed by `jobs models install all-mpnet-base-v2`):
    fp32 against sentence-transformers on BANKING77 test rows."""
    from sentence_transformers import SentenceTransformer

    texts = banking_texts[:300]
    ours = Encoder(REAL, None, EncoderOptions(dtype="float32")).encode(texts).embeddings
    ref = SentenceTransformer(str(REAL), device="cpu").encode(texts, normalize_embeddings=True)
    cos = (ours * ref).sum(1)  # [N]
    assert float(cos.min()) >= 0.9999, float(cos.min())
    from prune.config import tuned_default

    assert tuned_default(REAL) == PruneConfig(16, 0.5, 3, "norm")  # its own, found by its fingerprint


def test_prune_tuned_is_the_config_of_the_model_in_use(mpnet_dir: tuple[Path, torch.nn.Module]) -> None:
    """`--prune tuned` reads the config tuned for the model's fingerprint: the packaged one for the
    packaged model, the user's own (`jobs tune --write-default`) for another; none is an error that
    says how to get one, never another model's config."""
    from click.testing import CliRunner

    from jobs.cli import main as cli
    from prune.config import tuned_default
    from prune.errors import ConfigError
    from prune.models.files import model_fingerprint
    from prune.search.tune import write_default_file

    root, _ = mpnet_dir
    fp = model_fingerprint(root)
    with pytest.raises(ConfigError, match="no tuned pruning config for the model whose weights have sha256"):
        tuned_default(root)
    result = CliRunner().invoke(cli, ["encode", "--model", str(root), "--prune", "tuned"], input="hi\n")
    assert result.exit_code == 2 and "jobs tune --model MODEL --write-default" in result.output

    chosen = {
        "config": PruneConfig(6, 0.3, 2, "norm").to_dict(),
        "speedup": 1.2,
        "tokens_kept": 0.7,
        "drops_pt": {},
        "accuracy": {},
    }
    report = {
        "chosen": chosen,
        "tasks": [],
        "settings": {},
        "model": {"fingerprint": fp, "path": str(root)},
        "baseline": {"accuracy": {}},
    }
    path = write_default_file(report, "jobs tune (test)", "data")
    try:
        assert tuned_default(root) == PruneConfig(6, 0.3, 2, "norm")
        assert tuned_default() == PruneConfig(24, 0.4, 1, "norm")  # the packaged model's own, unchanged
        chosen["config"] = None  # the search found no pruning that pays within its bound: tuned is none
        write_default_file(report, "jobs tune (test)", "data")
        assert tuned_default(root) is None
    finally:
        path.unlink()


def test_a_classify_job_runs_an_mpnet_model_pruned_through_the_actors(
    tmp_path: Path, redis_url: str, mpnet_dir: tuple[Path, torch.nn.Module]
) -> None:
    """`tenants add` and `submit classify` with --model an MPNet folder, pruned: every row once, the
    MPNet's fingerprint in the parts, tokens pruned; a head of the packaged model is refused by it."""
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from prune.models.files import model_fingerprint
    from tests.conftest import REPO
    from tests.jobdata import write_logs
    from tests.test_job import check_exactly_once

    root, _ = mpnet_dir
    prefix, prune = "mpnetjob", "s=4,q=0.5,l=2,score=norm"
    ids = write_logs(tmp_path / "in", files=2, rows_per_file=150, row_group=50, tenants=("acme", "beta", "nobody"))
    common = ("--redis-url", redis_url, "--redis-prefix", prefix)
    # auto with int8's thresholds at 0: int8 would be picked for a BERT model on a VNNI node
    env = {**os.environ, "RAY_ADDRESS": "", "JOBS_INT8_MIN_ROWS": "0", "JOBS_INT8_MIN_ROWS_BUILT": "0"}

    def jobs(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "jobs", *args, *common]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)

    examples = str(REPO / "examples" / "acme_examples.csv")
    r = jobs(
        "tenants", "add", "acme", "--examples", examples, "--model", str(root), "--prune", prune, "--dtype", "float32"
    )
    assert r.returncode == 0, r.stderr
    r = jobs("tenants", "add", "beta", "--examples", examples, "--dtype", "float32")  # the packaged model's head
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = jobs("submit", "classify", "--input", str(tmp_path / "in"), "--output", str(out), "--id-column", "id",
             "--model", str(root), "--prune", prune, "--dtype", "auto")  # fmt: skip
    assert r.returncode == 0, r.stderr
    check_exactly_once(out, ids)
    table = [row for p in out.glob("part-*.parquet") for row in pq.read_table(p).to_pylist()]
    statuses = {t: {row["status"] for row in table if row["tenant"] == t} for t in ("acme", "beta", "nobody")}
    assert statuses["acme"] == {"ok"} and statuses["nobody"] == {"unknown_tenant"}
    assert statuses["beta"] == {"model_mismatch"}  # built by another model: refused, never scored with it
    meta = json.loads(pq.read_schema(next(out.glob("part-*.parquet"))).metadata[b"fewshot_jobs"])
    assert meta["model_fingerprint"] == model_fingerprint(root)
    report = json.loads((out / "_report.json").read_text())
    assert report["tokens_kept"] < report["tokens"]
    assert {p["dtype"] for p in report["placement"]} <= {"bfloat16", "float32"}  # never int8 by auto
    assert all("int8 loses accuracy on mpnet models" in p["dtype_why"] for p in report["placement"])


def test_every_packaged_tuned_config_is_valid_and_for_one_model() -> None:
    """prune/tuned/: one file per model, each a valid config (or null: no pruning pays) with the
    fingerprint of the model it was tuned on, no two for one model."""
    from prune.config import PACKAGED_TUNED_DIR, tuned_config

    records = [json.loads(p.read_text()) for p in PACKAGED_TUNED_DIR.glob("*.json")]
    for key in ("model_fingerprint", "weights_sha256"):
        keys = [r["provenance"][key] for r in records]
        assert len(records) >= 2 and len(set(keys)) == len(keys)
    for record in records:
        cfg = tuned_config(record)
        assert cfg is None or isinstance(cfg, PruneConfig)

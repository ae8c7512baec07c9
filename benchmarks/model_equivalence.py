"""Our forward of a model against sentence-transformers' on the same texts, fp32: the cosine of
each row's embeddings (min and mean) and both encoders' seconds, in one run.

    python benchmarks/model_equivalence.py --model all-mpnet-base-v2 \
        --out benchmarks/results/mpnet_equivalence.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np
import torch
from results_io import write_record

from prune import Encoder, EncoderOptions
from prune.models.files import read_spec
from prune.search.data import DEFAULT_DATA_DIR, load_split


@click.command()
@click.option("--model", default=None, help="A model folder or an installed model's name (default: the packaged one).")
@click.option("--texts", "split", default="banking77/test", show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(model: str | None, split: str, threads: int, out: Path | None) -> None:
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    dataset, name = split.split("/")
    texts = load_split(DEFAULT_DATA_DIR, dataset, name).texts
    ours = Encoder(model, None, EncoderOptions(dtype="float32"))
    started = time.perf_counter()
    a = ours.encode(texts).embeddings  # [N, D]
    ours_s = time.perf_counter() - started
    st = SentenceTransformer(str(read_spec(model).path), device="cpu")
    started = time.perf_counter()
    b = st.encode(texts, batch_size=32, normalize_embeddings=True)  # [N, D]
    st_s = time.perf_counter() - started
    cos = (a * b).sum(1)  # [N]
    record = {
        "command": " ".join(["benchmarks/model_equivalence.py", *sys.argv[1:]]),
        "model": model or "packaged",
        "fingerprint": ours.fingerprint,
        "texts": split,
        "rows": len(texts),
        "threads": threads,
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "ours_s": ours_s,
        "sentence_transformers_s": st_s,
    }
    print({k: v for k, v in record.items() if k != "command"})
    if np.isnan(cos).any():
        raise SystemExit("NaN in the embeddings")
    write_record(out, record)


if __name__ == "__main__":
    main()

"""MTEB's Banking77Classification with its own protocol, on our forward of a model: a check that
the installed weights and our forward are the published ones (all-mpnet-base-v2's published score
is 81.7 accuracy; the issue asks for it within 1 pt).

The protocol, as MTEB's AbsTaskClassification and logRegClassificationEvaluator run it: 10
experiments; in each, the train split's indices are shuffled (NumPy's global generator, seed 42)
and the first 8 rows of each label are the training set; scikit-learn's LogisticRegression
(random_state=42, max_iter=100, its defaults otherwise) is fit on their embeddings and scored on
every test row; the score is the mean accuracy. The bundled train and test files are MTEB's
(PolyAI's release: 10,003 and 3,080 rows). MTEB draws the same way from the Hugging Face copy,
whose row order may differ, so the draws (not the protocol) can differ from MTEB's own run.

    python benchmarks/mteb_banking77.py --model all-mpnet-base-v2 --published 81.7 \
        --out benchmarks/results/mteb_banking77_mpnet.json
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import click
import numpy as np
import torch
from results_io import write_record
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from prune import Encoder, EncoderOptions
from prune.search.data import DEFAULT_DATA_DIR, load_split

EXPERIMENTS = 10
SAMPLES_PER_LABEL = 8
SEED = 42


def draws(labels: list[str]) -> list[list[int]]:
    """Each experiment's training rows: MTEB's undersampling (one index array, shuffled again in
    each experiment, the first SAMPLES_PER_LABEL rows of each label)."""
    np.random.seed(SEED)
    idxs = np.arange(len(labels))
    out = []
    for _ in range(EXPERIMENTS):
        np.random.shuffle(idxs)
        counts: dict[str, int] = defaultdict(int)
        chosen = []
        for i in idxs.tolist():
            if counts[labels[i]] < SAMPLES_PER_LABEL:
                chosen.append(i)
                counts[labels[i]] += 1
        out.append(chosen)
    return out


@click.command()
@click.option("--model", default=None, help="A model folder or an installed model's name (default: the packaged one).")
@click.option("--dtype", default="float32", show_default=True)
@click.option("--published", type=float, default=None, help="The published score to compare with (accuracy, %).")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(model: str | None, dtype: str, published: float | None, threads: int, out: Path | None) -> None:
    torch.set_num_threads(threads)
    train = load_split(DEFAULT_DATA_DIR, "banking77", "train")
    test = load_split(DEFAULT_DATA_DIR, "banking77", "test")
    experiments = draws(train.labels)
    needed = sorted({i for rows in experiments for i in rows})
    encoder = Encoder(model, None, EncoderOptions(dtype=dtype))  # type: ignore[arg-type]  # checked by EncoderOptions
    x_train = dict(zip(needed, encoder.encode([train.texts[i] for i in needed]).embeddings, strict=True))
    x_test = encoder.encode(test.texts).embeddings  # [N, D]
    scores = []
    for rows in experiments:
        clf = LogisticRegression(random_state=SEED, n_jobs=-1, max_iter=100)
        clf.fit(np.stack([x_train[i] for i in rows]), [train.labels[i] for i in rows])
        scores.append(100 * accuracy_score(test.labels, clf.predict(x_test)))
    record = {
        "command": " ".join(["benchmarks/mteb_banking77.py", *sys.argv[1:]]),
        "model": model or "packaged",
        "fingerprint": encoder.fingerprint,
        "dtype": dtype,
        "protocol": {"experiments": EXPERIMENTS, "samples_per_label": SAMPLES_PER_LABEL, "seed": SEED},
        "accuracy": float(np.mean(scores)),
        "accuracy_per_experiment": scores,
        "published": published,
        "difference_pt": None if published is None else float(np.mean(scores)) - published,
    }
    print({k: v for k, v in record.items() if k not in ("command", "accuracy_per_experiment")})
    write_record(out, record)


if __name__ == "__main__":
    main()

"""A lead for issue 20's "pruning alone >= 1.5x at <= 0.5 pt": self-distil the layers after the
pruning layer so that the *pruned* forward reproduces the *unpruned* sentence embedding, on
unlabelled texts, then score few-shot accuracy with the pruned, distilled encoder.

- Teacher: the shipped encoder, unpruned, fp32. Student: a copy whose layers after ``l`` are
  trained (AdamW, bf16 autocast) to maximise the cosine between its pruned embedding and the
  teacher's; the layers up to ``l`` and the token ranking stay the shipped ones.
- ``--train`` names the dataset whose *train* texts are the unlabelled distillation pool (labels
  are never read). A batch job has such a pool: the tenant's own logs.
- Scoring is on train/valid tasks only (BANKING77 train halves, CLINC150 train -> valid; never
  test), the linear head (C=30) without intent names, mean over seeds, as
  ``benchmarks/token_merging.py`` scores. The BANKING77 task's queries are part of its train
  split, so distilling on BANKING77 train is transductive there (as distilling on a job's own
  logs would be); CLINC150's queries come from valid, which the pool never holds.

    .venv/bin/python benchmarks/pruning_distillation.py --config s=8,q=0.5,l=1,score=norm \\
        --train banking77 --eval banking77 --out benchmarks/results/pruning_distillation.json
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import click
import torch
import torch.nn.functional as F
from results_io import write_record
from token_merging import scores

from prune import Encoder, EncoderOptions
from prune.config import PruneConfig
from prune.importance import ImportanceScore, LayerTrace
from prune.models.bert import Bert
from prune.pruning import gather, keep_counts, select
from prune.search.data import DEFAULT_DATA_DIR, load_split
from prune.search.evaluate import EvalSettings
from prune.search.tune import search_tasks


def pruned_embedding(
    bert: Bert, ids: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, prune: PruneConfig, score: ImportanceScore
) -> torch.Tensor:
    """The pruned forward with gradients: ids [B, T], mask [B, T], lengths [B] -> [B, D] unit rows.
    ``Encoder._forward`` without inference mode, and with the mean pooling of the packaged model."""
    h = bert.embeddings(ids)  # [B, T, D]
    keep = keep_counts(lengths, prune)  # [B]
    for depth, layer in enumerate(bert.layers, start=1):
        at = depth == prune.layer
        h, probs = layer(h, mask, need_probs=at and score.needs_attention)
        if at:
            index = select(score(LayerTrace(h.detach(), mask, probs)), mask, keep)  # [B, T']
            h, mask = gather(h, index, keep)  # [B, T', D], [B, T']
    m = mask[:, :, None].to(h.dtype)
    return F.normalize((h * m).sum(1) / m.sum(1), dim=1)


def distil(teacher: Encoder, prune: PruneConfig, texts: list[str], epochs: int, lr: float, log=print) -> Bert:  # type: ignore[no-untyped-def]
    """A copy of the teacher's layers, those after ``prune.layer`` trained as above."""
    torch.manual_seed(0)
    target = torch.from_numpy(teacher.encode(texts).embeddings)  # [N, D] unpruned fp32
    ids, _ = teacher.tokenize(texts)
    student = copy.deepcopy(teacher.bert).requires_grad_(False)
    params = [p for layer in student.layers[prune.layer :] for p in layer.parameters()]
    for p in params:
        p.requires_grad_(True)
    score = teacher.with_prune(prune)._score
    assert score is not None
    batches_per_epoch = len(texts) // 32
    total = epochs * batches_per_epoch
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / total))
    start, step = time.perf_counter(), 0
    for epoch in range(epochs):
        order = list(range(len(texts)))
        random.Random(epoch).shuffle(order)
        batches = []  # rows of similar length together (little padding), batches in random order
        for chunk in (order[i : i + 1024] for i in range(0, len(order), 1024)):
            chunk = sorted(chunk, key=lambda i: len(ids[i]))
            batches += [chunk[i : i + 32] for i in range(0, len(chunk), 32)]
        random.Random(100 + epoch).shuffle(batches)
        for batch in batches:
            x, mask, lengths = teacher._batch_tensors([ids[i] for i in batch])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                emb = pruned_embedding(student, x, mask, lengths, prune, score)  # [B, D]
            loss = (1 - (emb.float() * target[batch]).sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 200 == 0:
                log(f"  step {step}/{total}: 1 - cosine {loss.item():.4f}, {time.perf_counter() - start:.0f} s")
    return student.requires_grad_(False).eval()


def as_encoder(base: Encoder, student: Bert, prune: PruneConfig) -> Encoder:
    """``base`` (its dtype, tokenizer, options) running the student's layers, pruned."""
    enc = copy.copy(base.with_prune(prune))
    enc.bert = copy.deepcopy(student)
    if base.options.dtype == "bfloat16":  # as Encoder keeps its matmul weights
        enc.bert.matmul_weights_to(torch.bfloat16)
    return enc


@click.command()
@click.option("--config", "configs", multiple=True, required=True, help="A pruning config, e.g. s=8,q=0.5,l=1.")
@click.option("--train", "train_set", type=click.Choice(["banking77", "clinc150"]), required=True)
@click.option("--eval", "eval_sets", multiple=True, type=click.Choice(["banking77", "clinc150"]), required=True)
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--lr", type=float, default=5e-5, show_default=True)
@click.option("--shots", default="5,10", show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(
    configs: tuple[str, ...],
    train_set: str,
    eval_sets: tuple[str, ...],
    epochs: int,
    lr: float,
    shots: str,
    seeds: int,
    out: Path | None,
) -> None:
    ks = tuple(int(k) for k in shots.split(","))
    settings = EvalSettings(ks, seeds, ("linear",), intent_names="off")
    teacher = Encoder(options=EncoderOptions(dtype="float32"))
    base = Encoder(options=EncoderOptions(dtype="bfloat16"))
    pool = list(load_split(DEFAULT_DATA_DIR, train_set, "train").texts)
    tasks = search_tasks(DEFAULT_DATA_DIR, eval_sets, query_per_intent=30)
    unpruned = {t.dataset: scores(base, None, t, settings)[0] for t in tasks}
    results: list[dict[str, object]] = []
    for config in configs:
        prune = PruneConfig.parse(config)
        click.echo(f"{config}: distilling on {len(pool)} {train_set} train texts, {epochs} epochs")
        student = as_encoder(base, distil(teacher, prune, pool, epochs, lr, log=click.echo), prune)
        for task in tasks:
            dropped = scores(base.with_prune(prune), None, task, settings)[0]
            distilled = scores(student, None, task, settings)[0]
            un = unpruned[task.dataset]
            q = student.encode(task.query.texts)
            kept = float(q.tokens_kept.sum() / q.tokens.sum())
            row = {"dataset": task.dataset, "config": config, "train": train_set, "epochs": epochs, "lr": lr}
            row |= {"tokens_kept": kept}
            row |= {"unpruned": un, "pruned": dropped, "distilled": distilled}
            click.echo(
                f"{task.dataset} {config} ({kept:.1%} of tokens kept): change against unpruned, pruned "
                f"{ {k: round(dropped[k] - un[k], 2) for k in ks} }, pruned and distilled "
                f"{ {k: round(distilled[k] - un[k], 2) for k in ks} }"
            )
            results.append(row)
    write_record(out, {"dtype": base.options.dtype, "seeds": seeds, "results": results})


if __name__ == "__main__":
    main()

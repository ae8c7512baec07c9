"""Post-training pruning of FFN neurons instead of tokens, in few-shot accuracy on train/valid
tasks only (BANKING77 train halves, CLINC150 train -> valid; never test). The int8 linears run
at the core's peak (docs/performance.md), so a faster encoder needs fewer multiply-adds: the
FFN holds two thirds of them, and each neuron dropped from every layer removes 2 x 384 of the
10.6 M a token costs.

Each layer keeps the ``--keep`` neurons of the largest mean |activation| on unlabelled train
texts of both sets (after the activation function, real tokens only) times the L2 norm of the
neuron's output weights. ``--compensate`` adds the dropped neurons' mean contribution to the
output bias. The linear head (C=30) is fitted on k examples per intent and scored as `jobs
eval` scores it, mean over seeds.

    .venv/bin/python benchmarks/ffn_neurons.py --keep 1408,1280,1152 --out benchmarks/results/ffn_neurons.json
"""

from __future__ import annotations

import copy
from pathlib import Path

import click
import torch
from results_io import accuracy_table, write_record
from torch import nn

from prune import Encoder, EncoderOptions
from prune.models.bert import Layer
from prune.search.data import DEFAULT_DATA_DIR, load_split
from prune.search.evaluate import EvalSettings
from prune.search.tune import measure, search_tasks

CALIBRATION_STRIDE = {"banking77": 5, "clinc150": 10}  # every n-th train text: 2001 + 1510


def neuron_stats(encoder: Encoder, texts: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, over the real tokens of ``texts``: mean |activation| and mean activation of each
    FFN neuron, [F] each."""
    layers = list(encoder.bert.layers)
    sums = [torch.zeros(layer.ffn_in.out_features) for layer in layers]
    abs_sums = [torch.zeros_like(s) for s in sums]
    count = [0]
    mask_now: list[torch.Tensor] = []

    def hook(i: int):  # type: ignore[no-untyped-def]
        def record(module: nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
            a = layers[i].act(out)[mask_now[0]]  # [tokens, F]
            sums[i] += a.sum(0)
            abs_sums[i] += a.abs().sum(0)

        return record

    handles = [layer.ffn_in.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        ids_all, _ = encoder.tokenize(texts)
        with torch.inference_mode():
            for start in range(0, len(ids_all), 64):
                ids, mask, _ = encoder._batch_tensors(ids_all[start : start + 64])  # [B, T] each
                mask_now[:] = [mask]
                count[0] += int(mask.sum())
                h = encoder.bert.embeddings(ids)  # [B, T, D]
                for layer in layers:
                    h, _ = layer(h, mask)
    finally:
        for handle in handles:
            handle.remove()
    return [s / count[0] for s in abs_sums], [s / count[0] for s in sums]


def shrunk(layer: Layer, keep: torch.Tensor, mean: torch.Tensor | None) -> None:
    """The layer's FFN cut to the neurons ``keep`` [F'], in place; with ``mean`` [F], the dropped
    neurons' mean contribution goes into the output bias."""
    ffn_in, ffn_out = layer.ffn_in, layer.ffn_out
    new_in, new_out = nn.Linear(ffn_in.in_features, len(keep)), nn.Linear(len(keep), ffn_out.out_features)
    new_in.weight.data, new_in.bias.data = ffn_in.weight.data[keep].clone(), ffn_in.bias.data[keep].clone()
    new_out.weight.data, new_out.bias.data = ffn_out.weight.data[:, keep].clone(), ffn_out.bias.data.clone()
    if mean is not None:
        dropped = torch.ones(ffn_in.out_features, dtype=torch.bool)
        dropped[keep] = False
        new_out.bias.data += ffn_out.weight.data[:, dropped] @ mean[dropped]  # [D]
    layer.ffn_in, layer.ffn_out = new_in, new_out


@click.command()
@click.option("--keep", "keeps", default="1408,1280,1152", show_default=True, help="Neurons kept per layer (of 1536).")
@click.option("--compensate/--no-compensate", default=False, show_default=True)
@click.option("--shots", default="5,10", show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(keeps: str, compensate: bool, shots: str, seeds: int, out: Path | None) -> None:
    settings = EvalSettings(tuple(int(k) for k in shots.split(",")), seeds, ("linear",), intent_names="off")
    tasks = search_tasks(DEFAULT_DATA_DIR, ("banking77", "clinc150"), query_per_intent=10)
    base = Encoder(None, None, EncoderOptions(dtype="float32"))
    texts = [t for ds, n in CALIBRATION_STRIDE.items() for t in load_split(DEFAULT_DATA_DIR, ds, "train").texts[::n]]
    magnitude, mean = neuron_stats(base, texts)
    results = {"1536 (unpruned)": {k: 100 * v for k, v in measure(base, tasks, settings).accuracy.items()}}
    print(accuracy_table("FFN neurons kept", results), flush=True)
    for keep in (int(k) for k in keeps.split(",")):
        encoder = copy.copy(base)
        encoder.bert = copy.deepcopy(base.bert)
        for layer, mag, mu in zip(encoder.bert.layers, magnitude, mean, strict=True):
            score = mag * layer.ffn_out.weight.norm(dim=0)  # [F]
            shrunk(layer, score.argsort(descending=True)[:keep].sort().values, mu if compensate else None)
        results[str(keep)] = {k: 100 * v for k, v in measure(encoder, tasks, settings).accuracy.items()}
        print(accuracy_table("FFN neurons kept", results), flush=True)
    write_record(out, {"compensate": compensate, "seeds": seeds, "calibration_texts": len(texts), "results": results})


if __name__ == "__main__":
    main()

"""This encoder against the CPU backends a user could pick instead, on the same texts and threads.

Peers (sentence-transformers' own backends, exported offline from the model, ``--model``: the
packaged one by default, or any folder or installed model's name):
- sentence-transformers torch fp32, the reference for cosine;
- ONNX Runtime fp32 and dynamic int8 (the quantisation config the CPU supports);
- OpenVINO fp32 (precision hint f32), OpenVINO default (bf16 where the CPU has it), and OpenVINO
  static int8 with NNCF, calibrated on BANKING77 *train* texts shipped with this package (the
  default calibration set of sentence-transformers comes from the Hub); CPU pinning off.
Ours: fp32, bf16, a small job's default (``--dtype auto --prune tuned``), and static int8
(``--dtype int8``, torchao PT2E + Inductor), unpruned and with the tuned pruning (a large job's
default on a CPU with AMX-INT8 or AVX512-VNNI), and the latter as a job's actor runs it.

Every repeat runs every variant once on the BANKING77 test texts, in a rotated order; medians.
With ``--streams N`` each variant runs as N processes side by side that share the threads and
split the texts. A job's actor runs one single-thread stream per CPU as threads of one process:
the variant "in a job actor's streams" does so in every layout, so that a ``--streams 2`` run
sets it against each peer at two processes.
Each variant's few-shot accuracy is measured with the ``jobs eval`` protocol (BANKING77, train
support, test queries, default head, 5 seeds), because a fast variant that loses accuracy is no win.
Needs the ``[peers]`` extra:

    pip install -c constraints.txt -e '.[peers]'
    python benchmarks/peers.py --repeats 5 --out benchmarks/results/peers.json
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import click
import numpy as np
import torch

from jobs.report import hardware
from prune import Encoder, EncoderOptions
from prune.config import tuned_default
from prune.cpu import cpu_model, native_bf16
from prune.models.files import read_spec
from prune.search.data import DEFAULT_DATA_DIR, Split, load_split
from prune.search.evaluate import Encoded, EvalSettings, needed_support, score_runs, summarise

Embed = Callable[[list[str]], np.ndarray]  # texts -> [N, D] float32, L2-normalised


Builder = Callable[[Path, Path, list[str], int], Embed]  # (model dir, work dir, calibration texts, threads)


def _st_embed(model: object) -> Embed:
    def run(texts: list[str]) -> np.ndarray:
        emb = model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)  # type: ignore[attr-defined]
        return np.asarray(emb, dtype=np.float32)

    return run


def _ours(dtype: str, tuned: bool) -> Builder:
    def build(model_dir: Path, work: Path, calibration: list[str], threads: int) -> Embed:
        prune = tuned_default(model_dir) if tuned else None  # the model's own tuned config
        enc = Encoder(model_dir, prune, EncoderOptions(dtype=dtype))  # type: ignore[arg-type]
        return lambda texts: enc.encode(texts).embeddings

    return build


def _ours_actor(dtype: str, tuned: bool) -> Builder:
    """Ours as a job's actor runs it: one process, ``threads`` single-thread encode streams (Python
    threads sharing the encoder, workers.actor.ClassifierWorker), each on every threads-th text."""

    def build(model_dir: Path, work: Path, calibration: list[str], threads: int) -> Embed:
        from concurrent.futures import ThreadPoolExecutor

        torch.set_num_threads(1)  # before the encoder loads: int8 compiles its kernels for 1 thread
        embed = _ours(dtype, tuned)(model_dir, work, calibration, 1)
        pool = ThreadPoolExecutor(threads, thread_name_prefix="encode")

        def run(texts: list[str]) -> np.ndarray:
            shares = list(pool.map(lambda i: embed(texts[i::threads]), range(threads)))
            out = np.empty((len(texts), shares[0].shape[1]), dtype=np.float32)  # [N, D]
            for i, share in enumerate(shares):
                out[i::threads] = share
            return out

        return run

    return build


def _st_torch(model_dir: Path, work: Path, calibration: list[str], threads: int) -> Embed:
    from sentence_transformers import SentenceTransformer

    return _st_embed(SentenceTransformer(str(model_dir), device="cpu"))


def _vnni_config() -> str:
    flags = Path("/proc/cpuinfo").read_text().split()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def _onnx(int8: bool) -> Builder:
    def build(model_dir: Path, work: Path, calibration: list[str], threads: int) -> Embed:
        import onnxruntime as ort
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.backend import export_dynamic_quantized_onnx_model

        out = work / "onnx"
        if not (out / "onnx" / "model.onnx").exists():
            SentenceTransformer(str(model_dir), backend="onnx", device="cpu").save(str(out))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        kwargs: dict[str, object] = {"session_options": options, "file_name": "onnx/model.onnx"}
        model = SentenceTransformer(str(out), backend="onnx", device="cpu", model_kwargs=kwargs)
        if int8:
            name = f"model_qint8_{_vnni_config()}.onnx"
            if not (out / "onnx" / name).exists():
                export_dynamic_quantized_onnx_model(model, _vnni_config(), str(out))
            kwargs["file_name"] = f"onnx/{name}"
            model = SentenceTransformer(str(out), backend="onnx", device="cpu", model_kwargs=kwargs)
        return _st_embed(model)

    return build


def _calibration_items(tokenizer: object, texts: list[str], names: set[str]) -> list[dict[str, np.ndarray]]:
    items = []
    for t in texts:
        enc = tokenizer(t, return_tensors="np", truncation=True)  # type: ignore[operator]
        items.append({k: v.astype(np.int64) for k, v in enc.items() if k in names})  # each [1, T]
    return items


def _openvino(precision: str) -> Builder:
    """precision: "f32" (hint f32), "default" (no hint: bf16 where the CPU has it), or "int8" (static, NNCF)."""

    def build(model_dir: Path, work: Path, calibration: list[str], threads: int) -> Embed:
        import openvino as ov
        from sentence_transformers import SentenceTransformer

        out = work / "openvino"
        if not (out / "openvino" / "openvino_model.xml").exists():
            SentenceTransformer(str(model_dir), backend="openvino", device="cpu").save(str(out))
        int8_xml = out / "openvino" / "openvino_model_qint8_static.xml"
        if precision == "int8" and not int8_xml.exists():
            import nncf

            tokenizer = SentenceTransformer(str(out), backend="openvino", device="cpu").tokenizer
            ov_model = ov.Core().read_model(out / "openvino" / "openvino_model.xml")
            items = _calibration_items(tokenizer, calibration, {p.get_any_name() for p in ov_model.inputs})
            quantized = nncf.quantize(
                ov_model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items)
            )
            ov.save_model(quantized, int8_xml)
        # Pinning off: pinned, the processes of a --streams run share one core (OpenVINO int8 went
        # from 857 to 448 utt/s in 2 streams), and on this VM one process was faster without it too.
        config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False}
        if precision == "f32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        file_name = f"openvino/{int8_xml.name}" if precision == "int8" else "openvino/openvino_model.xml"
        kwargs = {"file_name": file_name, "ov_config": config}
        return _st_embed(SentenceTransformer(str(out), backend="openvino", device="cpu", model_kwargs=kwargs))

    return build


ACTOR = "ours int8, prune tuned, in a job actor's streams"
VARIANTS: dict[str, tuple[str, Builder]] = {  # name -> (peer or ours, builder)
    "sentence-transformers fp32 (torch)": ("peer", _st_torch),
    "ONNX Runtime fp32": ("peer", _onnx(int8=False)),
    f"ONNX Runtime dynamic int8 ({_vnni_config()})": ("peer", _onnx(int8=True)),
    "OpenVINO fp32": ("peer", _openvino("f32")),
    "OpenVINO default": ("peer", _openvino("default")),
    "OpenVINO static int8 (NNCF, BANKING77 train)": ("peer", _openvino("int8")),
    "ours fp32": ("ours", _ours("float32", tuned=False)),
    "ours bf16": ("ours", _ours("bfloat16", tuned=False)),
    "ours small-job default (dtype auto, prune tuned)": ("ours", _ours("auto", tuned=True)),
    "ours int8": ("ours", _ours("int8", tuned=False)),
    "ours int8, prune tuned (a large job's default on AMX-INT8)": ("ours", _ours("int8", tuned=True)),
    ACTOR: ("ours", _ours_actor("int8", tuned=True)),
}
ONE_PROCESS = frozenset({ACTOR})  # a job's actor: one process of single-thread streams, in every layout


def _serve(conn: Connection, name: str, model_dir: Path, work: Path, calibration: list[str], threads: int) -> None:
    """A variant in its own process: build it, then embed on request, timing inside the process."""
    torch.set_num_threads(threads)
    embed = VARIANTS[name][1](model_dir, work, calibration, threads)
    conn.send("ready")
    while (msg := conn.recv()) is not None:
        op, texts = msg
        start = time.perf_counter()
        emb = embed(texts)
        conn.send((time.perf_counter() - start, emb if op == "embed" else None))


class Worker:
    def __init__(self, name: str, model_dir: Path, work: Path, calibration: list[str], threads: int) -> None:
        self.name, self.kind = name, VARIANTS[name][0]
        self.conn, child = mp.get_context("spawn").Pipe()
        self.process = mp.get_context("spawn").Process(
            target=_serve, args=(child, name, model_dir, work, calibration, threads), daemon=True
        )
        self.process.start()
        if self.conn.recv() != "ready":
            raise click.ClickException(f"{name} did not start")

    def ask(self, op: str, texts: list[str]) -> None:
        self.conn.send((op, texts))

    def answer(self) -> tuple[float, np.ndarray | None]:
        return self.conn.recv()  # type: ignore[no-any-return]

    def run(self, op: str, texts: list[str]) -> tuple[float, np.ndarray | None]:
        self.ask(op, texts)
        return self.answer()

    def embed(self, texts: list[str]) -> np.ndarray:
        emb = self.run("embed", texts)[1]
        assert emb is not None
        return emb

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(timeout=30)


class Variant:
    """A variant run as ``streams`` processes side by side, each with ``threads // streams`` threads,
    as a batch job runs one stream per CPU: each times its share of the texts, and the wall time of
    all of them together is the variant's time."""

    def __init__(
        self, name: str, model_dir: Path, work: Path, calibration: list[str], threads: int, streams: int
    ) -> None:
        self.name, self.kind = name, VARIANTS[name][0]
        if name in ONE_PROCESS:  # its streams are threads of one process, whatever --streams says
            streams = 1
        # one after another (a Worker returns once loaded): the first may export what the others read
        self.workers = [Worker(name, model_dir, work, calibration, threads // streams) for _ in range(streams)]

    def time(self, texts: list[str]) -> float:
        start = time.perf_counter()
        for i, w in enumerate(self.workers):  # every stream gets every streams-th text: similar lengths
            w.ask("time", texts[i :: len(self.workers)])
        for w in self.workers:
            w.answer()
        return time.perf_counter() - start

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.workers[0].embed(texts)

    def close(self) -> None:
        for w in self.workers:
            w.close()


def accuracy(
    embed: Callable[[list[str]], np.ndarray], support: Split, query: Split, queries: np.ndarray, settings: EvalSettings
) -> dict[int, float]:
    """Few-shot accuracy (%) per k, mean over seeds; ``queries`` [Q, D] are ``query``'s embeddings."""
    idx = needed_support(support, settings)
    sup = embed([support.texts[i] for i in idx])  # [S, D]
    enc = Encoded(dict(zip(idx, sup, strict=True)), queries, 0.0, 0, 0)
    rows = summarise(score_runs(support, query, enc, settings))
    return {int(r["k"]): 100 * float(r["accuracy"]) for r in rows}  # type: ignore[arg-type]


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Time only the first N test texts.")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--calibration",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="BANKING77 train texts for OpenVINO's static int8.",
)
@click.option("--threads", type=click.IntRange(min=1), default=os.cpu_count(), show_default=True)
@click.option(
    "--streams",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes per variant, side by side, sharing --threads (a batch job's one stream per CPU).",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/peers"),
    show_default=True,
    help="Where the exported models are kept (reused on the next run).",
)
@click.option(
    "--variant",
    "only",
    multiple=True,
    type=click.Choice(list(VARIANTS)),
    help="Run only these (repeatable; the first is the cosine reference). Default: all.",
)
@click.option("--model", default=None, help="A model folder or an installed model's name (default: the packaged one).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JSON.")
def main(
    data_dir: Path,
    repeats: int,
    limit: int | None,
    seeds: int,
    calibration: int,
    threads: int,
    streams: int,
    work_dir: Path,
    only: tuple[str, ...],
    model: str | None,
    out: Path | None,
) -> None:
    if threads % streams:
        raise click.BadParameter(
            f"--threads ({threads}) must be a multiple of --streams ({streams})", param_hint="--streams"
        )
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
        import optimum.onnxruntime  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError as e:
        raise click.ClickException(f"{e}; install the extra: pip install -c constraints.txt -e '.[peers]'") from e
    support, query = load_split(data_dir, "banking77", "train"), load_split(data_dir, "banking77", "test")
    texts = list(query.texts[:limit] if limit else query.texts)
    model_dir = read_spec(model).path
    work_dir = work_dir / model_dir.name  # each model's exports apart
    work_dir.mkdir(parents=True, exist_ok=True)
    calibration_texts = list(support.texts[:calibration])
    variants: list[Variant] = []
    try:
        for name in only or VARIANTS:  # one at a time: a variant may export the model its successor reads
            click.echo(f"loading {name}", err=True)
            variants.append(Variant(name, model_dir, work_dir, calibration_texts, threads, streams))
        full = {w.name: w.embed(list(query.texts)) for w in variants}  # warm-up, and the eval's queries
        times: dict[str, list[float]] = {w.name: [] for w in variants}
        for rep in range(repeats):  # interleaved: each repeat runs every variant once, in a rotated order
            shift = rep % len(variants)
            for w in variants[shift:] + variants[:shift]:
                times[w.name].append(w.time(texts))
            click.echo(f"repeat {rep + 1}/{repeats} done", err=True)
        settings = EvalSettings(shots=(5, 10), seeds=seeds, heads=("auto",), intent_names="off")
        reference = full[variants[0].name]
        rows = []
        for w in variants:
            cos = (full[w.name] * reference).sum(1)  # [Q] cosine to sentence-transformers fp32
            acc = accuracy(w.embed, support, query, full[w.name], settings)
            med = statistics.median(times[w.name])
            rows.append(
                {
                    "variant": w.name,
                    "kind": w.kind,
                    "median_seconds": med,
                    "utterances_per_s": len(texts) / med,
                    "mean_cosine": float(cos.mean()),
                    "min_cosine": float(cos.min()),
                    "accuracy_5": acc[5],
                    "accuracy_10": acc[10],
                    "seconds": times[w.name],
                }
            )
            click.echo(f"{w.name}: {len(texts) / med:.0f} utt/s, 10-shot {acc[10]:.1f}", err=True)
    finally:
        for w in variants:
            w.close()
    _report(rows, texts, repeats, threads, streams, seeds, out, str(model_dir))


def _report(
    rows: list[dict[str, object]],
    texts: list[str],
    repeats: int,
    threads: int,
    streams: int,
    seeds: int,
    out: Path | None,
    model: str,
) -> None:
    fp32_acc = float(rows[0]["accuracy_10"])  # type: ignore[arg-type]
    peers = [r for r in rows if r["kind"] == "peer" and fp32_acc - float(r["accuracy_10"]) <= 0.5]  # type: ignore[arg-type]
    fastest = max(peers or rows[:1], key=lambda r: float(r["utterances_per_s"]))  # type: ignore[arg-type]
    base = float(rows[0]["utterances_per_s"])  # type: ignore[arg-type]
    for r in rows:
        r["x_st_fp32"] = float(r["utterances_per_s"]) / base  # type: ignore[arg-type]
        r["x_fastest_peer"] = float(r["utterances_per_s"]) / float(fastest["utterances_per_s"])  # type: ignore[arg-type]
    click.echo(
        f"\nmodel {model}; {len(texts)} BANKING77 test texts, {threads} threads in {streams} stream(s), "
        f"{repeats} interleaved repeats, medians; "
        f"CPU {cpu_model()} (bf16 native: {native_bf16()}). Fastest peer within 0.5 pt of fp32 at 10 shots: "
        f"{fastest['variant'] if peers else 'none in this run (x fastest peer: to the first variant)'}. "
        f"Accuracy: BANKING77 test, train support, head auto, {seeds} seeds.\n"
    )
    click.echo("| variant | utt/s | x ST fp32 | x fastest peer | mean / min cosine | 5-shot | 10-shot |")
    click.echo("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        click.echo(
            f"| {r['variant']} | {r['utterances_per_s']:.0f} | {r['x_st_fp32']:.2f} | "
            f"{r['x_fastest_peer']:.2f} | {r['mean_cosine']:.5f} / {r['min_cosine']:.4f} | "
            f"{r['accuracy_5']:.1f} | {r['accuracy_10']:.1f} |"
        )
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        machine = {**hardware(), "torch": torch.__version__}
        out.write_text(
            json.dumps(
                {
                    "model": model,
                    "texts": len(texts),
                    "repeats": repeats,
                    "threads": threads,
                    "streams": streams,
                    "seeds": seeds,
                    "fastest_peer": fastest["variant"] if peers else None,
                    "machine": machine,
                    "results": rows,
                },
                indent=2,
            )
        )
        click.echo(f"\nwrote {out}", err=True)


if __name__ == "__main__":
    main()

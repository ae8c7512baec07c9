"""End-to-end classify-job throughput, as ratios against baselines measured in the same run.

1. job vs encoder: the whole job (plan, queue, one actor on every core, read, encode, classify,
   write Parquet, report) against this encoder alone on the same texts in this process, same
   pruning, dtype and thread count. Interleaved repeats, medians.
2. scaling: the same job with 1 actor vs 2 actors of 1 CPU each, and, as this machine's own
   ceiling, the encoder alone in 1 vs 2 bare processes (1 thread each, the rows split between
   them). Interleaved repeats, medians.
3. big (``--big-rows 1000000``): one job on that many synthetic rows, run through the CLI in a
   subprocess so the driver's peak RSS is the driver's alone; prints driver and actor RSS.

Inputs are replicated BANKING77 test texts for one tenant built from examples/acme_examples.csv.
Redis is the embedded server (or ``--redis-url``); keys go under a throwaway prefix.

    python benchmarks/job.py --rows 30000 --repeats 3 --big-rows 1000000 --out benchmarks/results/job.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from results_io import write_record

from jobs import embedded_redis
from jobs.cli.options import EXAMPLES_DIR, model_option, prune_option
from jobs.examples_io import read_examples
from jobs.report_schema import Report
from jobs.run import run_job
from jobs.tenants import add_tenant
from prune import Encoder, EncoderOptions
from prune.config import DTYPE_CHOICES, resolve_dtype
from prune.cpu import cpu_model, native_bf16
from prune.search.data import DEFAULT_DATA_DIR, load_split
from workers.connection import connect
from workers.job_spec import DEFAULT_UNIT_ROWS, Columns, JobSpec
from workers.tenant_store import CentroidStore

REPO = Path(__file__).resolve().parents[1]


def load_texts(data_dir: Path) -> list[str]:
    try:
        return load_split(data_dir, "banking77", "test").texts
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None


def write_logs(folder: Path, texts: list[str], rows: int, files: int, row_group: int) -> list[str]:
    """``files`` Parquet files of id, tenant, text holding ``rows`` replicated texts; returns them in order."""
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-rows // files)
    out: list[str] = []
    for f in range(files):
        n0, n1 = f * per_file, min(rows, (f + 1) * per_file)
        chunk = [texts[i % len(texts)] for i in range(n0, n1)]
        table = pa.table({"id": [f"r{i:08d}" for i in range(n0, n1)], "tenant": ["acme"] * len(chunk), "text": chunk})
        pq.write_table(table, folder / f"logs-{f:03d}.parquet", row_group_size=row_group)
        out += chunk
    return out


_BARE: Encoder | None = None


def _bare_init(model: str | None, prune: Any, dtype: str) -> None:
    global _BARE
    torch.set_num_threads(1)
    _BARE = Encoder(model, prune, EncoderOptions(dtype=dtype))  # type: ignore[arg-type]
    _BARE.encode(["warm up"] * 64)


def _bare_encode(texts: list[str]) -> int:
    assert _BARE is not None
    return len(_BARE.encode(texts))


def bare_processes(
    texts: list[str], model: str | None, prune: Any, dtype: str, n: int, stack: ExitStack
) -> Callable[[], float]:
    """Seconds for ``n`` single-thread processes (started and warmed up beforehand) to encode
    ``texts`` split between them: no Ray, no Redis, no Parquet."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    pool = stack.enter_context(ProcessPoolExecutor(n, context, initializer=_bare_init, initargs=(model, prune, dtype)))
    list(pool.map(_bare_encode, [["warm up"]] * n))  # every process started and loaded

    def run() -> float:
        start = time.perf_counter()
        done = sum(pool.map(_bare_encode, [texts[i::n] for i in range(n)]))
        assert done == len(texts)
        return time.perf_counter() - start

    return run


def actor_breakdown(reports: list[Report]) -> dict[str, float]:
    """Where a variant's wall time went, medians over its runs: encoding ms per row on each
    actor, and the seconds an actor was not working on a unit (start-up, waiting at the end)."""
    runs = [(r.wall_s, a) for r in reports for a in r.actors.values()]
    return {
        "encode_ms_per_row": statistics.median(1000 * a.encode_s / a.rows for _, a in runs),
        "busy_ms_per_row": statistics.median(1000 / a.busy_rows_per_s for _, a in runs),
        "idle_s": statistics.median(wall - a.busy_s for wall, a in runs),
    }


def median_rate(rows: int, seconds: list[float]) -> float:
    return rows / statistics.median(seconds)


def interleave(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run every variant once per repeat, in a rotated order; seconds per run."""
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            times[name].append(variants[name]())
            click.echo(f"  repeat {rep + 1}/{repeats} {name}: {times[name][-1]:.1f}s", err=True)
    return times


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR)
@click.option("--rows", type=click.IntRange(min=1), default=30000, show_default=True, help="Rows per timed job.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--unit-rows", type=click.IntRange(min=1), default=DEFAULT_UNIT_ROWS, show_default=True)
@model_option
@click.option("--prune", default="tuned", show_default=True, callback=prune_option)
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True)
@click.option("--big-rows", type=click.IntRange(min=0), default=0, help="Also run one job of this many rows.")
@click.option("--skip-scaling", is_flag=True, help="Skip the 1 vs 2 actors comparison.")
@click.option("--skip-encoder", is_flag=True, help="Skip the job vs encoder comparison.")
@click.option("--redis-url", envvar="JOBS_REDIS_URL", default=None)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JSON.")
def main(
    data_dir: Path,
    rows: int,
    repeats: int,
    unit_rows: int,
    model: str | None,
    prune: Any,
    dtype: str,
    big_rows: int,
    skip_scaling: bool,
    skip_encoder: bool,
    redis_url: str | None,
    out: Path | None,
) -> None:
    import ray

    dtype = resolve_dtype(dtype)  # every variant runs the same, concrete dtype
    cores = os.cpu_count() or 1
    url = redis_url or embedded_redis.ensure_running()
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    client = connect(url)
    encoder = Encoder(model, prune, EncoderOptions(dtype=dtype))
    add_tenant(CentroidStore(client, prefix), encoder, "acme", read_examples(EXAMPLES_DIR / "acme_examples.csv"))
    work = Path(tempfile.mkdtemp(prefix="jobs-bench-"))
    texts = write_logs(work / "logs", load_texts(data_dir), rows, files=4, row_group=unit_rows)
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    reports: dict[str, list[Report]] = {}

    def job(name: str, actors: int, cpus: int) -> Callable[[], float]:
        def run() -> float:
            spec = JobSpec(
                input=str(work / "logs"),
                output=str(work / f"out-{uuid.uuid4().hex[:8]}"),
                columns=Columns("text", "tenant", "id"),
                model=model,
                prune=prune,
                dtype=dtype,
                actors=actors,
                cpus_per_actor=cpus,
                unit_rows=unit_rows,
            )
            report = run_job(spec, redis_url=url, prefix=prefix, log=lambda m: None)
            if report.rows.written != rows:
                raise SystemExit(f"{name}: {report.rows.written} rows written, expected {rows}")
            reports.setdefault(name, []).append(report)
            return report.wall_s

        return run

    def encoder_alone() -> float:
        torch.set_num_threads(cores)
        start = time.perf_counter()
        encoder.encode(texts)
        return time.perf_counter() - start

    encoder.encode(texts[:2000])  # warm-up
    result: dict[str, Any] = {"rows": rows, "repeats": repeats, "unit_rows": unit_rows, "cores": cores}
    result["model"], result["fingerprint"] = model or "packaged", encoder.fingerprint
    result["prune"], result["dtype"] = str(prune) if prune else None, dtype
    result["machine"] = {"cpu": cpu_model(), "bf16_native": native_bf16()}

    if not skip_encoder:
        click.echo(f"[1] job (1 actor, {cores} CPUs) vs encoder alone ({cores} threads), {rows} rows", err=True)
        t = interleave({"encoder alone": encoder_alone, "job": job("job", 1, cores)}, repeats)
        enc_rate, job_rate = median_rate(rows, t["encoder alone"]), median_rate(rows, t["job"])
        busy = statistics.median(next(iter(r.actors.values())).busy_rows_per_s for r in reports["job"])
        result["job_vs_encoder"] = {
            "encoder_rows_per_s": enc_rate,
            "job_rows_per_s": job_rate,
            "ratio": job_rate / enc_rate,
            "actor_busy_rows_per_s": busy,
            "actor_busy_ratio": busy / enc_rate,
            "seconds": t,
        }

    if not skip_scaling:
        click.echo(f"[2] 1 actor vs 2 actors, 1 CPU each; 1 vs 2 bare processes; {rows} rows", err=True)
        with ExitStack() as stack:
            variants = {"1 actor": job("1 actor", 1, 1), "2 actors": job("2 actors", 2, 1)}
            variants |= {"1 process": bare_processes(texts, model, prune, dtype, 1, stack)}
            variants |= {"2 processes": bare_processes(texts, model, prune, dtype, 2, stack)}
            t = interleave(variants, repeats)
        rate = {name: median_rate(rows, t[name]) for name in t}
        job_ratio, bare_ratio = rate["2 actors"] / rate["1 actor"], rate["2 processes"] / rate["1 process"]
        result["scaling"] = {
            "one_actor_rows_per_s": rate["1 actor"],
            "two_actors_rows_per_s": rate["2 actors"],
            "ratio": job_ratio,
            "one_process_rows_per_s": rate["1 process"],
            "two_processes_rows_per_s": rate["2 processes"],
            "bare_ratio": bare_ratio,
            "efficiency": job_ratio / bare_ratio,
            "seconds": t,
            "actors": {name: actor_breakdown(reports[name]) for name in ("1 actor", "2 actors")},
        }
    ray.shutdown()

    if big_rows:
        click.echo(f"[3] one job of {big_rows} rows through the CLI", err=True)
        big = work / "big"
        write_logs(big / "logs", load_texts(data_dir), big_rows, files=10, row_group=unit_rows)
        cmd = [sys.executable, "-m", "jobs", "submit", "classify", "--input", str(big / "logs")]
        cmd += [
            "--output",
            str(big / "out"),
            "--actors",
            "2",
            "--cpus-per-actor",
            "1",
            "--unit-rows",
            str(unit_rows),
        ]
        cmd += ["--dtype", dtype, "--prune", str(prune) if prune else "none", "--redis-url", url]
        cmd += ["--model", model] if model else []
        cmd += ["--redis-prefix", prefix]
        subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "TQDM_DISABLE": "1"})
        report = Report.from_dict(json.loads((big / "out" / "_report.json").read_text()))
        result["big"] = {
            "rows": report.rows.written,
            "wall_s": report.wall_s,
            "rows_per_s": report.rows_per_s,
            "driver_max_rss_mb": report.driver_max_rss_mb,
            "actor_max_rss_mb": {a: v.max_rss_mb for a, v in report.actors.items()},
            "tokens_kept_pct": report.tokens_kept_pct,
        }

    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    print_summary(result)
    write_record(out, {"command": " ".join(["benchmarks/job.py", *sys.argv[1:]]), **result})


def print_summary(r: dict[str, Any]) -> None:
    click.echo(
        f"\n{r['rows']} rows, {r['repeats']} interleaved repeats, medians; prune {r['prune']}, {r['dtype']}, "
        f"{r['cores']} cores\n"
    )
    click.echo("| comparison | baseline rows/s | rows/s | ratio |")
    click.echo("|---|---:|---:|---:|")
    if "job_vs_encoder" in r:
        j = r["job_vs_encoder"]
        click.echo(
            f"| job end to end (1 actor) vs encoder alone | {j['encoder_rows_per_s']:.0f} | "
            f"{j['job_rows_per_s']:.0f} | {j['ratio']:.2f} |"
        )
        click.echo(
            f"| actor while busy vs encoder alone | {j['encoder_rows_per_s']:.0f} | "
            f"{j['actor_busy_rows_per_s']:.0f} | {j['actor_busy_ratio']:.2f} |"
        )
    if "scaling" in r:
        s = r["scaling"]
        click.echo(
            f"| 2 actors vs 1 actor (1 CPU each) | {s['one_actor_rows_per_s']:.0f} | "
            f"{s['two_actors_rows_per_s']:.0f} | {s['ratio']:.2f} |"
        )
        click.echo(
            f"| machine ceiling: encoder in 2 vs 1 bare processes (1 thread each) | "
            f"{s['one_process_rows_per_s']:.0f} | {s['two_processes_rows_per_s']:.0f} | {s['bare_ratio']:.2f} |"
        )
        click.echo(f"\njob scaling / machine ceiling: {s['efficiency']:.2f}")
        for name, b in s["actors"].items():
            click.echo(
                f"{name}: encode {b['encode_ms_per_row']:.3f} ms/row, busy {b['busy_ms_per_row']:.3f} ms/row, "
                f"not on a unit {b['idle_s']:.1f}s per actor"
            )
    if "big" in r:
        b = r["big"]
        actors = ", ".join(f"{v:.0f}" for v in b["actor_max_rss_mb"].values())
        click.echo(
            f"\nbig job: {b['rows']} rows in {b['wall_s']:.0f}s ({b['rows_per_s']:.0f} rows/s), "
            f"driver max RSS {b['driver_max_rss_mb']:.0f} MB, actor max RSS {actors} MB"
        )


if __name__ == "__main__":
    main()

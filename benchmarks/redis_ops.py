"""Redis operations per work unit: the input of the cluster cost model (docs/cluster.md).

Runs the real classify job (one actor, the packaged encoder) on the same rows cut into different
numbers of units, each on a fresh redis-server of its own, and reads the server's own
`INFO commandstats` (calls and server CPU time per command, commands run inside the queue's Lua
scripts included) and `INFO stats` (network bytes). A least-squares line over the runs splits
the counts into a per-job part and a per-unit part.

    python benchmarks/redis_ops.py --rows 4000 --unit-rows 2000,1000,500,250 --out benchmarks/results/redis_ops.json
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
import numpy as np
import redis

from jobs.cli.options import EXAMPLES_DIR
from jobs.embedded_redis import redis_server_binary
from jobs.examples_io import read_examples
from jobs.run import run_job
from jobs.tenants import add_tenant
from prune import Encoder, EncoderOptions
from prune.cpu import cpu_model
from workers.connection import connect
from workers.job_spec import Columns, JobSpec
from workers.tenant_store import CentroidStore

REPO = Path(__file__).resolve().parents[1]


def fresh_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    sock = folder / "redis.sock"
    cmd = [redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--dir", str(folder), "--save", ""]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"unix://{sock}"
    for _ in range(200):
        try:
            connect(url).ping()
            return proc, url
        except (OSError, redis.RedisError):  # not up yet
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def server_counts(url: str) -> dict[str, Any]:
    client = connect(url)
    stats = client.info("commandstats")
    net = client.info("stats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    usec = {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in stats.items()}
    net_in, net_out = net["total_net_input_bytes"], net["total_net_output_bytes"]
    return {"calls": calls, "usec": usec, "net_in": net_in, "net_out": net_out}


def one_job(logs: Path, rows: int, unit_rows: int, encoder: Encoder, work: Path) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(dir=work))
    proc, url = fresh_redis(folder)
    try:
        prefix = "ops"
        examples = read_examples(EXAMPLES_DIR / "acme_examples.csv")
        add_tenant(CentroidStore(connect(url), prefix), encoder, "acme", examples)
        connect(url).config_resetstat()  # the job's own operations from here on
        spec = JobSpec(
            input=str(logs), output=str(work / f"out-{uuid.uuid4().hex[:8]}"), columns=Columns("text", "tenant", "id"),
            actors=1, cpus_per_actor=2, unit_rows=unit_rows,
        )  # fmt: skip
        report = run_job(spec, redis_url=url, prefix=prefix, log=lambda m: None)
        assert report.rows.written == rows and report.units.dead == 0
        counts = server_counts(url)
        counts["calls"].pop("config", None)  # the CONFIG RESETSTAT itself
        return {"unit_rows": unit_rows, "units": report.units.total, "wall_s": report.wall_s, **counts}
    finally:
        proc.terminate()
        proc.wait(10)


def per_unit(runs: list[dict[str, Any]], value: str) -> dict[str, float]:
    """Least squares value = per_job + per_unit * units over the runs."""
    units = np.array([r["units"] for r in runs], dtype=float)
    ys = np.array([sum(r[value].values()) if isinstance(r[value], dict) else r[value] for r in runs], dtype=float)
    slope, intercept = np.polyfit(units, ys, 1)
    return {"per_unit": float(slope), "per_job": float(intercept)}


@click.command()
@click.option("--rows", type=click.IntRange(min=1), default=4000, show_default=True)
@click.option("--unit-rows", default="2000,1000,500,250", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
def main(rows: int, unit_rows: str, out: Path | None) -> None:
    import ray
    from job import load_texts, write_logs  # benchmarks/job.py, beside this script

    from prune.search.data import DEFAULT_DATA_DIR

    work = Path(tempfile.mkdtemp(prefix="jobs-redis-ops-"))
    write_logs(work / "logs", load_texts(DEFAULT_DATA_DIR), rows, files=2, row_group=250)
    encoder = Encoder(None, None, EncoderOptions())
    ray.init(include_dashboard=False, log_to_driver=False)
    runs = [one_job(work / "logs", rows, int(u), encoder, work) for u in unit_rows.split(",")]
    for r in runs:
        click.echo(f"unit_rows {r['unit_rows']:5d}: {r['units']:3d} units, {sum(r['calls'].values()):5d} calls, "
                   f"{sum(r['usec'].values()) / 1000:.1f} ms server CPU, wall {r['wall_s']:.1f}s")  # fmt: skip
    fit = {v: per_unit(runs, v) for v in ("calls", "usec", "net_in", "net_out")}
    for v, f in fit.items():
        click.echo(f"{v}: {f['per_unit']:.1f} per unit + {f['per_job']:.0f} per job")
    result = {"cpu": cpu_model(), "rows": rows, "runs": runs, "fit": fit}
    if out:
        out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

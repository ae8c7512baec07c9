"""`jobs submit classify --ray-address` against a real multi-node Ray on this machine: a head with no
CPUs (as in cluster.yaml) and two worker nodes, each with its own raylet and resources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.jobdata import write_logs
from tests.test_job import check_exactly_once

pytestmark = pytest.mark.system


def test_submit_to_a_multi_node_cluster(tmp_path: Path, redis_url: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    ids = write_logs(tmp_path / "in", files=2, rows_per_file=600, row_group=100, tenants=("acme",))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # like cluster.yaml's head
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        prefix = "clusterrun"
        examples = tmp_path / "acme.csv"
        examples.write_text("text,label\nwhere is my card,card\ncard not here yet,card\nexchange rate,fx\nfx fee,fx\n")
        env = {**os.environ, "RAY_ADDRESS": ""}
        common = ["--redis-url", redis_url, "--redis-prefix", prefix]
        r = subprocess.run(
            [sys.executable, "-m", "jobs", "tenants", "add", "acme", "--examples", str(examples), *common],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        out = tmp_path / "out"
        r = subprocess.run(
            [sys.executable, "-m", "jobs", "submit", "classify", "--input", str(tmp_path / "in"), "--output", str(out),
             "--ray-address", cluster.address, "--cpus-per-actor", "1", "--unit-rows", "100", "--id-column", "id",
             *common],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=900,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        check_exactly_once(out, ids)
        report = json.loads((out / "_report.json").read_text())
        worker_ids = {w.node_id for w in workers}
        placed = [p["node"] for p in report["placement"]]
        assert len(placed) == 2 and len(set(placed)) == 2, placed  # one actor per worker node
        assert set(placed) == worker_ids  # none on the head
        assert report["config"]["actors"] == 2 and report["statuses"] == {"ok": len(ids)}
    finally:
        ray.shutdown()
        cluster.shutdown()

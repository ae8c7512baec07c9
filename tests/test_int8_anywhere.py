"""int8 on a node without a C++ compiler (Ray's CPU images have none): refused at once with one
line where its graphs are not built, a fallback stated where --dtype auto would have chosen it,
and (tests/test_int8.py) built graphs loaded and run without one."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prune.cpu import native_int8
from tests.conftest import REPO
from tests.jobdata import read_output_ids
from tests.test_faults import classify, one_error_line
from workers.connection import connect
from workers.queue import WorkQueue

pytestmark = pytest.mark.system  # int8 refusals and fallbacks through real CLI jobs

LOGS = str(REPO / "examples" / "logs")


@contextlib.contextmanager
def one_node_cluster() -> Iterator[str]:
    """A ray.cluster_utils cluster: a head with no CPUs and one 1-CPU node, started with this
    process's environment (which its nodes inherit); yields its address."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_jobs_encode_int8_without_a_compiler_is_refused_in_one_line(tmp_path: Path, no_cxx_env: dict[str, str]) -> None:
    env = {**no_cxx_env, "JOBS_INT8_CACHE": str(tmp_path / "empty")}
    started = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "jobs", "encode", "--dtype", "int8"],
        input="where is my card\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "no working C++ compiler" in line and "apt-get install g++" in line, r.stderr
    assert time.time() - started < 30 and r.stdout == ""


def test_a_classify_job_with_int8_without_a_compiler_is_refused_before_it_exists(
    tmp_path: Path, redis_url: str, heads: str, no_cxx_env: dict[str, str]
) -> None:
    """Every actor died in __init__ with an InductorError traceback, the restart budget was spent,
    and the job ended with exit 4 after 0 units."""
    env = {**no_cxx_env, "JOBS_INT8_CACHE": str(tmp_path / "empty")}
    started = time.time()
    args = ["--input", LOGS, "--output", str(tmp_path / "out"), "--dtype", "int8", "--job-id", "nocxx"]
    r = classify(redis_url, heads, *args, env=env)
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "--dtype int8 cannot run on 1 node(s): node " in line, r.stderr
    assert "no working C++ compiler" in line and time.time() - started < 30
    assert not WorkQueue(connect(redis_url), heads, "nocxx").exists() and not (tmp_path / "out").exists()


def test_auto_falls_back_where_int8_would_pay_but_cannot_run_and_says_why(
    tmp_path: Path, redis_url: str, heads: str, no_cxx_env: dict[str, str]
) -> None:
    """The large-job rule forced (the thresholds set to 0 rows): every row, and the placement says
    what ran and why."""
    env = {**no_cxx_env, "JOBS_INT8_CACHE": str(tmp_path / "empty"), "JOBS_INT8_MIN_ROWS": "0"}
    env["JOBS_INT8_MIN_ROWS_BUILT"] = "0"
    out = tmp_path / "out"
    r = classify(redis_url, heads, "--input", LOGS, "--output", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert len(read_output_ids(out)) == 355 and len(set(read_output_ids(out))) == 355
    [placement] = json.loads((out / "_report.json").read_text())["placement"]
    assert placement["dtype"] in ("bfloat16", "float32")
    if native_int8():
        assert "int8 would pay" in placement["dtype_why"] and "no working C++ compiler" in placement["dtype_why"]
    else:
        assert "no native int8" in placement["dtype_why"]


def test_on_a_cluster_int8_is_asked_of_every_node_and_refused_before_the_job_exists(
    tmp_path: Path, redis_url: str, heads: str, no_cxx_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's nodes are asked by a Ray task each (the local default asks this machine before
    Ray starts): nodes started without a compiler refuse, naming themselves."""
    for key in ("PATH", "CXX", "CC"):  # the nodes' processes inherit this environment
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PATH", no_cxx_env["PATH"])
    monkeypatch.setenv("JOBS_INT8_CACHE", str(tmp_path / "empty"))
    with one_node_cluster() as address:
        args = ["--input", LOGS, "--output", str(tmp_path / "out"), "--dtype", "int8", "--job-id", "nocxx-cluster"]
        r = classify(redis_url, heads, *args, "--ray-address", address, "--cpus-per-actor", "1", env=no_cxx_env)
        line = one_error_line(r.stderr)
        assert r.returncode == 2 and "--dtype int8 cannot run on 1 node(s): node " in line, r.stderr
        assert "no working C++ compiler" in line
        assert not WorkQueue(connect(redis_url), heads, "nocxx-cluster").exists() and not (tmp_path / "out").exists()


def test_on_a_cluster_a_named_model_missing_on_a_node_is_refused_before_the_job_exists(
    tmp_path: Path, redis_url: str, heads: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--model NAME` resolves on each node to that node's data folder: the driver has the model
    installed, the node does not, and the job is refused before it exists, naming the node."""
    import os

    from prune.models.files import default_model_dir

    driver_home = tmp_path / "driver-home"
    (driver_home / "models").mkdir(parents=True)
    (driver_home / "models" / "all-mpnet-base-v2").symlink_to(default_model_dir())  # "installed" here
    monkeypatch.setenv("JOBS_HOME", str(tmp_path / "node-home"))  # the nodes inherit it: nothing installed
    with one_node_cluster() as address:
        args = ["--input", LOGS, "--output", str(tmp_path / "out"), "--model", "all-mpnet-base-v2", "--prune", "none"]
        args += ["--job-id", "nomodel-cluster", "--ray-address", address, "--cpus-per-actor", "1"]
        r = classify(redis_url, heads, *args, env={**os.environ, "JOBS_HOME": str(driver_home)})
        line = one_error_line(r.stderr)
        assert r.returncode == 2 and "the job's model cannot run on 1 node(s): node " in line, r.stderr
        assert "'all-mpnet-base-v2' is not installed here: run `jobs models install all-mpnet-base-v2`" in line
        assert not WorkQueue(connect(redis_url), heads, "nomodel-cluster").exists() and not (tmp_path / "out").exists()

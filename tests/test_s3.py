"""The classify job, its resume and `jobs query` on a real S3-compatible server (moto's, started
by the tests: tests/s3_server.py), reached over HTTP exactly as AWS is: pyarrow's S3 filesystem,
the endpoint, region and credentials from the environment. Rows are counted from the part
objects against the input ids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO
from tests.jobdata import write_logs
from tests.s3_server import SECRET_KEY, S3Server
from tests.test_faults import classify
from tests.test_job import wait_for_done_units

pytestmark = pytest.mark.system  # real CLI jobs on the real model


def bucket(s3: S3Server) -> str:
    name = f"fsj-{uuid.uuid4().hex[:10]}"
    s3.filesystem().create_dir(name)
    return name


def upload(s3: S3Server, local: Path, path: str) -> None:
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3.filesystem())


def objects(s3: S3Server, path: str) -> dict[str, bytes]:
    fs = s3.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    found = {}
    for info in infos:
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                found[info.path.removeprefix(path + "/")] = f.read()
    return found


def part_ids(found: dict[str, bytes]) -> list[str]:
    import pyarrow as pa

    ids: list[str] = []
    for name, data in sorted(found.items()):
        if name.startswith("part-"):
            ids += pq.read_table(pa.BufferReader(data), columns=["id"]).column("id").to_pylist()
    return ids


def check_every_row_once(found: dict[str, bytes], ids: list[str]) -> None:
    got = part_ids(found)
    assert not [i for i, c in Counter(got).items() if c > 1], "a row was written twice"
    assert sorted(got) == sorted(ids), f"{len(got)} rows in the parts, {len(ids)} in the input"
    assert "_SUCCESS" in found and not [n for n in found if n.startswith("_tmp-")]
    assert json.loads(found["_report.json"])["rows"]["written"] == len(ids)


def test_a_job_on_s3_labels_every_row_once_and_no_secret_shows(
    tmp_path: Path, redis_url: str, heads: str, s3: S3Server
) -> None:
    b = bucket(s3)
    ids = write_logs(tmp_path / "in", files=2, rows_per_file=300, row_group=100)
    upload(s3, tmp_path / "in", f"{b}/logs")
    args = ["--input", f"s3://{b}/logs", "--output", f"s3://{b}/out", "--unit-rows", "200", "--dtype", "float32"]
    r = classify(redis_url, heads, *args, env=s3.env)
    assert r.returncode == 0, r.stderr
    found = objects(s3, f"{b}/out")
    check_every_row_once(found, ids)
    for name, data in found.items():  # the report, the parts' footers, _SUCCESS
        assert SECRET_KEY.encode() not in data, name
    assert SECRET_KEY not in r.stdout + r.stderr
    query = [sys.executable, "-m", "jobs", "query", f"s3://{b}/out", "--format", "json"]
    q = subprocess.run(query, capture_output=True, text=True, cwd=REPO, env={**os.environ, **s3.env}, timeout=120)
    assert q.returncode == 0, q.stderr
    assert sorted(json.loads(line)["id"] for line in q.stdout.splitlines()) == sorted(ids)


def test_a_driver_killed_while_writing_to_s3_resumes_to_every_row_once(
    tmp_path: Path, redis_url: str, heads: str, s3: S3Server
) -> None:
    """Local input, output on S3: the driver (and its local Ray) is killed mid-job; the resume
    finishes the job without a row twice, and leaves no temporary object."""
    b = bucket(s3)
    ids = write_logs(tmp_path / "in", files=2, rows_per_file=1000, row_group=250)
    job = f"s3-kill-{uuid.uuid4().hex[:6]}"
    args = ["--input", str(tmp_path / "in"), "--output", f"s3://{b}/out", "--unit-rows", "250", "--dtype", "float32"]
    cmd = [sys.executable, "-m", "jobs", "submit", "classify", "--id-column", "id", *args, "--claim-idle", "2"]
    cmd += ["--job-id", job, "--redis-url", redis_url, "--redis-prefix", heads]
    env = {**os.environ, "RAY_ADDRESS": "", **s3.env}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_for_done_units(redis_url, heads, job, 2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray
    proc.wait()
    assert "_SUCCESS" not in objects(s3, f"{b}/out")
    r = classify(redis_url, heads, "--resume", job, env=s3.env)
    assert r.returncode == 0, r.stderr
    check_every_row_once(objects(s3, f"{b}/out"), ids)

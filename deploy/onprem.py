"""The on-prem variant of cluster.yaml, derived by code so that the two never drift apart.

    python deploy/onprem.py --head-ip 10.0.0.1 --worker-ips 10.0.0.2,10.0.0.3 \
        --ssh-user ubuntu --ssh-key ~/.ssh/id_ed25519 > onprem.yaml
    ray up onprem.yaml -y

Ray's local node provider takes machines you already have, reached over SSH. What changes from
cluster.yaml: the provider (`local`, with the head's and the workers' addresses), the SSH login,
no Docker (each node needs Python 3.11 with pip on its PATH; the setup commands install torch and
the project into it), and no node types (the local provider has one; Ray detects each machine's
CPUs, so the head runs actors too). The setup and start commands, the Redis with its password
and the file mounts stay exactly as in cluster.yaml.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

CLUSTER_YAML = Path(__file__).resolve().parent.parent / "cluster.yaml"
CHECKOUT_MOUNT = "~/fewshot-jobs"


def onprem_config(
    base: dict[str, Any],
    *,
    head_ip: str,
    worker_ips: list[str],
    ssh_user: str,
    ssh_key: str,
    checkout: str,
    cluster_name: str | None = None,
    ssh_proxy_command: str | None = None,
) -> dict[str, Any]:
    """``base`` (cluster.yaml as loaded) on Ray's local provider; every command is kept as is."""
    config = copy.deepcopy(base)
    for key in ("docker", "available_node_types", "head_node_type"):
        config.pop(key, None)
    config["provider"] = {"type": "local", "head_ip": head_ip, "worker_ips": list(worker_ips)}
    config["max_workers"] = len(worker_ips)
    auth: dict[str, Any] = {"ssh_user": ssh_user, "ssh_private_key": ssh_key}
    if ssh_proxy_command:
        auth["ssh_proxy_command"] = ssh_proxy_command
    config["auth"] = auth
    # The checkout that is copied to every node: the one this script belongs to, by default.
    config["file_mounts"] = {**config.get("file_mounts", {}), CHECKOUT_MOUNT: checkout}
    if cluster_name:
        config["cluster_name"] = cluster_name
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head-ip", required=True)
    parser.add_argument("--worker-ips", default="", help="comma-separated; none for a one-machine cluster")
    parser.add_argument("--ssh-user", required=True)
    parser.add_argument("--ssh-key", required=True, help="private key that logs in to every node")
    parser.add_argument("--checkout", default=str(CLUSTER_YAML.parent), help="the project folder to copy")
    args = parser.parse_args(argv)
    workers = [ip.strip() for ip in args.worker_ips.split(",") if ip.strip()]
    base = yaml.safe_load(CLUSTER_YAML.read_text())
    config = onprem_config(
        base, head_ip=args.head_ip, worker_ips=workers, ssh_user=args.ssh_user,
        ssh_key=args.ssh_key, checkout=args.checkout,
    )  # fmt: skip
    yaml.safe_dump(config, sys.stdout, sort_keys=False, width=100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""cluster.yaml is checked the way `ray up` checks it (Ray's defaults merged, then Ray's own schema
and validator), plus the project's invariants: one actor per worker node, matching versions."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import REPO


def load() -> dict[str, Any]:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def ray_up_checks(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` runs on the file before it launches anything (commands._bootstrap_config)."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validator() -> None:
    prepared = ray_up_checks(load())
    assert prepared["provider"]["type"] == "aws"


def test_one_actor_per_worker_node_and_none_on_the_head() -> None:
    from jobs.run import DEFAULT_CPUS_PER_ACTOR, JobSpec

    config = load()
    head = config["available_node_types"][config["head_node_type"]]
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    assert JobSpec.__dataclass_fields__["cpus_per_actor"].default is None  # the driver's default applies
    for t in workers:  # one default actor fills a worker node
        assert t["resources"]["CPU"] == DEFAULT_CPUS_PER_ACTOR
        assert t["node_config"]["InstanceType"].startswith("m7i.")  # AMX-BF16
        assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"]


def test_versions_match_the_project() -> None:
    config = load()
    image = config["docker"]["image"]
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert image == f"rayproject/ray:{ray.__version__}-{py}-cpu"
    setup = "\n".join(config["setup_commands"])
    assert '"torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu' in setup
    assert "-c ~/fewshot-jobs/constraints.txt" in setup
    assert "torch==2.13.0" in (REPO / "constraints.txt").read_text()
    assert config["file_mounts"]["~/fewshot-jobs"] == "."


def test_every_node_installs_the_models_deploy_lists_and_each_is_installable(tmp_path: Path) -> None:
    """The setup command that installs deploy/models.txt's names: run here by the shell on a list
    with comments and blanks, it asks `jobs models install` for each name once; and every name the
    shipped list holds is one `jobs models install` knows."""
    import subprocess

    from prune.models.catalog import CATALOG

    (command,) = [c for c in load()["setup_commands"] if "deploy/models.txt" in c]
    listed = tmp_path / "fewshot-jobs" / "deploy" / "models.txt"
    listed.parent.mkdir(parents=True)
    listed.write_text("# a comment\n\nall-mpnet-base-v2\n  \nother-model\n")
    fake = command.replace("~/", f"{tmp_path}/").replace("python -m jobs models install", "echo install")
    done = subprocess.run(["bash", "-c", fake], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:-1] == ["install all-mpnet-base-v2", "install other-model"]
    names = [line.strip() for line in (REPO / "deploy" / "models.txt").read_text().splitlines()]
    assert all(n in CATALOG for n in names if n and not n.startswith("#"))


def test_every_node_starts_ray_with_the_clusters_token() -> None:
    """`ray start` turns token authentication on only where a token is present (Ray 2.60): the
    user's token is mounted on every node, and both start commands ask for token mode."""
    config = load()
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert len(start) == 1 and "export RAY_AUTH_MODE=token;" in start[0].split("ray start")[0], key


def _broken(config: dict[str, Any], case: str) -> dict[str, Any]:
    c = copy.deepcopy(config)
    if case == "unknown top-level key":
        c["max_worker"] = 3  # a typo of max_workers
    elif case == "wrong type":
        c["idle_timeout_minutes"] = "five"
    elif case == "node type without node_config":
        del c["available_node_types"]["cpu4"]["node_config"]
    elif case == "head type not defined":
        c["head_node_type"] = "missing"
    elif case == "min_workers above max_workers":
        c["available_node_types"]["cpu4"]["min_workers"] = 40
    return c


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown top-level key", "'max_worker' was unexpected"),
        ("wrong type", "'five' is not of type 'number'"),
        ("node type without node_config", "'node_config' is a required property"),
        ("head type not defined", "must be one of `available_node_types`"),
        ("min_workers above max_workers", "smaller than the sum of `min_workers`"),
    ],
)
def test_a_broken_cluster_yaml_fails(case: str, message: str) -> None:
    with pytest.raises((jsonschema.ValidationError, ValueError)) as info:
        ray_up_checks(_broken(load(), case))
    assert message in str(info.value)
    ray_up_checks(load())  # the real file still passes

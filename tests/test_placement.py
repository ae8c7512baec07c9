"""How many actors of how many CPUs a job asks for, against the nodes Ray reports (a fake node list:
the subject is the arithmetic, not Ray)."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.errors import JobError
from jobs.run import _placement
from workers.job_spec import Columns, JobSpec


def nodes(*cpus: int, dead: int = 0) -> list[dict[str, Any]]:
    alive = [{"Alive": True, "Resources": {"CPU": float(c)} if c else {}} for c in cpus]
    return alive + [{"Alive": False, "Resources": {"CPU": 64.0}}] * dead


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch):
    import ray

    def use(*cpus: int, dead: int = 0) -> None:
        monkeypatch.setattr(ray, "nodes", lambda: nodes(*cpus, dead=dead))

    return use


def spec(actors: int | None = None, cpus: int | None = None) -> JobSpec:
    return JobSpec(input="in", output="out", columns=Columns(), actors=actors, cpus_per_actor=cpus)


def test_defaults_one_actor_per_node_that_fits(cluster) -> None:
    cluster(0, 4, 4, 2, dead=1)  # head without CPUs, two 4-CPU workers, a small node, a dead big node
    assert _placement(spec(), local=False) == (2, 4)


def test_local_default_uses_the_machine(cluster) -> None:
    cluster(2)
    assert _placement(spec(), local=True) == (1, 2)
    assert _placement(spec(actors=2, cpus=1), local=True) == (2, 1)


def test_no_node_fits_an_actor(cluster) -> None:
    cluster(0, 2)
    with pytest.raises(JobError, match="no node has 4 CPUs"):
        _placement(spec(cpus=4), local=False)


def test_too_many_actors_locally_fails_early(cluster) -> None:
    cluster(2)
    with pytest.raises(JobError, match="at most 2"):
        _placement(spec(actors=3, cpus=1), local=True)


def test_too_many_actors_on_a_cluster_wait_for_the_autoscaler(cluster) -> None:
    cluster(0, 4)
    said: list[str] = []
    assert _placement(spec(actors=3), local=False, log=said.append) == (3, 4)
    assert "1 fit now" in said[0] and "wait for nodes" in said[0]

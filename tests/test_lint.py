"""The code base stays ruff-clean (lint rules in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_ruff_check_passes() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    r = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.system  # about 40 s on a fresh clone (mypy's cache then makes it seconds)
def test_the_type_checker_passes() -> None:
    """mypy on jobs/, workers/ and prune/ (its settings in pyproject.toml), with zero errors."""
    r = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# folder -> imports it must not use (imports only go down: jobs -> workers -> prune, and the
# research side prune/search uses the encoder, never the reverse)
FORBIDDEN = {
    "prune": {"jobs", "workers", "ray", "redis", "click", "prune.search"},
    "prune/search": {"jobs", "workers", "ray", "redis", "click"},
    "workers": {"jobs", "click", "prune.search"},
}


def _imports(path: Path) -> list[str]:
    import ast

    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module]
    return names


def _banned(name: str, banned: set[str]) -> bool:
    return any(name == b or name.startswith(b + ".") for b in banned)


def test_imports_only_go_down() -> None:
    found = []
    for folder, banned in FORBIDDEN.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            if folder == "prune" and path.is_relative_to(REPO / "prune" / "search"):
                continue  # checked under its own rule
            found += [f"{path.relative_to(REPO)}: {n}" for n in _imports(path) if _banned(n, banned)]
    assert not found, "imports against the package boundaries:\n" + "\n".join(found)


def test_the_boundary_rule_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import ray\nfrom prune.search.data import load_split\nfrom prune.encoder import Encoder\n")
    assert [n for n in _imports(bad) if _banned(n, FORBIDDEN["prune"])] == ["ray", "prune.search.data"]


def _module_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (anywhere in it, lazily too). ``from pkg
    import sub`` is an edge to ``pkg.sub``, not to the package's ``__init__``."""
    import ast

    files = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                subs = {f"{node.module}.{a.name}" for a in node.names} & files.keys()
                edges |= subs or {node.module}
                edges |= {node.module} if len(subs) < len(node.names) else set()
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of two or more modules."""
    import networkx as nx

    g = nx.DiGraph([(a, b) for a, deps in graph.items() for b in deps])
    return sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)


def test_no_import_circle() -> None:
    assert _circles(_module_graph(REPO, ("jobs", "workers", "prune"))) == []


def test_the_circle_check_finds_one(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg import a\n")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (tmp_path / "pkg" / "b.py").write_text("from pkg import a, c\n")
    (tmp_path / "pkg" / "c.py").write_text("import os\n")
    assert _circles(_module_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b"]]


MAX_FUNCTION_LINES = 60


def test_no_function_over_60_lines() -> None:
    import ast

    long = []
    for package in ("jobs", "workers", "prune"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "functions over 60 lines (split them):\n" + "\n".join(long)


HEAVY = ("torch", "transformers", "ray")


def test_cli_starts_without_torch_or_ray() -> None:
    """The job driver, queries and reports never encode: loading the CLI must import neither
    torch (about 1 s of start and 100+ MB of driver memory) nor Ray (about 1 s). Encoding
    commands import torch on use; the job imports Ray when it starts one."""
    code = f"import sys, jobs.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"the CLI imported {r.stdout.strip()}"


def test_help_query_and_report_run_without_torch_or_ray(tmp_path: Path) -> None:
    """`jobs --help`, `jobs query` and `jobs report show` run to the end without loading either."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"tenant": ["a"], "intent": ["x"], "score": [0.5]}), tmp_path / "part-0.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    report = {"rows": {"planned": 1, "written": 1}, "wall_s": 1.0, "rows_per_s": 1.0, "config": {}, "actors": {}}
    (tmp_path / "_report.json").write_text(json.dumps(report))
    code = (
        "import sys, runpy\n"
        "from jobs.cli import main\n"
        "for args in (['--help'], ['query', sys.argv[1], '--format', 'csv'], ['report', 'show', sys.argv[1]]):\n"
        "    try:\n"
        "        main(args, standalone_mode=False)\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"tenant","intent","score"\n"a","x",0.5' in r.stdout  # the query ran
    assert r.stdout.strip().splitlines()[-1] == "LOADED []", r.stdout


NEEDLES = ("sha" + "red/datasets", "\x22sha" + "red\x22")  # spelled apart so this file does not match


def test_nothing_reads_beside_the_repository() -> None:
    """Code, tests and benchmarks use the datasets shipped in the package, never ../shared."""
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("jobs", "workers", "prune", "tests", "benchmarks")
        for path in (REPO / folder).rglob("*.py")
        if any(needle in path.read_text() for needle in NEEDLES)
    ]
    assert not offenders, offenders


def test_every_benchmark_record_is_in_the_results_index() -> None:
    """benchmarks/results/README.md indexes every record (commit, date, CPU)."""
    results = REPO / "benchmarks" / "results"
    index = (results / "README.md").read_text()
    records = [p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file() and p.name != "README.md"]
    missing = [r for r in records if f"`{r}`" not in index]
    assert records and not missing, f"add these to benchmarks/results/README.md: {missing}"

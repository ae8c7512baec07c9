"""The code base stays ruff-clean (lint rules in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ruff_check_passes() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    r = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# package -> top-level imports it must not use (imports only go down: jobs -> workers -> prune)
FORBIDDEN = {
    "prune": {"jobs", "workers", "ray", "redis", "click"},
    "workers": {"jobs", "click"},
}


def test_imports_only_go_down() -> None:
    import ast

    found = []
    for package, banned in FORBIDDEN.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                found += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in banned]
    assert not found, "imports against the package boundaries:\n" + "\n".join(found)


def test_cli_starts_without_torch() -> None:
    """The job driver, queries and reports never encode: loading the CLI must not import torch
    (about 1 s of start and 100+ MB of driver memory). Encoding commands import it on use."""
    code = "import sys, jobs.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"the CLI imported {r.stdout.strip()}"

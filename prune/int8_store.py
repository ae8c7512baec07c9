"""Built int8 graphs kept on disk, so that a node builds them once and loads them in about a
second, with or without a C++ compiler.

A graph is a run of int8 layers (start, stop) for one width class: rows of up to
``COMPILED_ATTENTION_MAX_TOKENS`` tokens (the summed attention) or longer (the fused kernel). It
is an AOTInductor package: the calibrated weights and the kernels Inductor generated for them,
compiled into a shared library. Building one needs a C++ compiler; loading one does not. The
packages of one encoder live in a folder keyed by everything the built code depends on (``key``),
in the user's data folder by default (``JOBS_INT8_CACHE`` names another, such as a folder every
node mounts): the streams of an actor, the actors of a node, a restarted actor and the next job
all load what the first built. A file lock makes the actors of a node build each graph once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import nn

from prune.cpu import cpu_flags
from prune.models.bert import COMPILED_ATTENTION_MAX_TOKENS
from prune.user_files import user_dir

FORMAT = 2  # of the packages and their key; a change builds them anew
CACHE_ENV = "JOBS_INT8_CACHE"
MAX_ROWS = 4096  # the graphs' dynamic range: rows per batch, tokens per row
MAX_TOKENS = 8192
WIDTHS = {"short": (2, COMPILED_ATTENTION_MAX_TOKENS), "long": (COMPILED_ATTENTION_MAX_TOKENS + 1, MAX_TOKENS)}
# The CPU features Inductor's generated code and oneDNN's kernels depend on: a package built on a
# CPU with other ones is built again rather than loaded.
ISA_FLAGS = frozenset(
    {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
     "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "avx_vnni"}
)  # fmt: skip


def width_class(width: int) -> str:
    """The class of a padded row width: the graphs of one class serve every width in it."""
    return "short" if width <= COMPILED_ATTENTION_MAX_TOKENS else "long"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def key(fingerprint: str, calibration: str, threads: int) -> str:
    """What a built graph depends on, as a folder name: the model's weights (``fingerprint``),
    the calibration (a digest of its texts and batching), torch and torchao, the CPU's ISA and the
    thread count the kernels were generated for."""
    parts = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "calibration": calibration,
        "torch": torch.__version__,
        "torchao": _version("torchao"),
        "isa": sorted(cpu_flags() & ISA_FLAGS),
        "threads": threads,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def cache_root() -> Path:
    return Path(os.environ[CACHE_ENV]).expanduser() if os.environ.get(CACHE_ENV) else user_dir() / "int8"


def compiler_problem() -> str | None:
    """Why Inductor cannot build a graph on this machine (no working C++ compiler), or None."""
    from torch._inductor import cpp_builder
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        cpp_builder.get_cpp_compiler()
    except (InvalidCxxCompiler, OSError) as exc:
        return f"no working C++ compiler ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return None


class GraphStore:
    """The packages of one key's graphs in ``folder``: present, loaded, or built under a lock."""

    def __init__(self, folder: Path, runners: int = 4) -> None:
        self.folder = folder
        self.runners = runners  # threads that may run one graph at once (an actor's streams)

    def path(self, start: int, stop: int, width: str) -> Path:
        return self.folder / f"layers-{start}-{stop}-{width}.pt2"

    def has(self, start: int, stop: int, width: str) -> bool:
        return self.path(start, stop, width).is_file()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held while a graph is built: another process building the same folder waits, then loads."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def load(self, start: int, stop: int, width: str) -> Callable[..., torch.Tensor]:
        """The package's runner. Loaded through AOTInductor's package loader itself: the public
        ``aoti_load_package`` first asks Inductor for this CPU's vector ISA, which compiles a test
        program, so it would need the compiler a built package does not (the key covers the ISA)."""
        from torch._inductor.package.package import AOTICompiledModel

        loader = torch._C._aoti.AOTIModelPackageLoader(
            str(self.path(start, stop, width)), "model", False, self.runners, -1
        )
        return AOTICompiledModel(loader)

    def build(self, module: nn.Module, start: int, stop: int, width: str, dim: int, positions: bool = False) -> None:
        """Export ``module`` (h [B, T, D], mask [B, T], and the tokens' original positions [B, T] if
        ``positions`` -> [B, T, D]) for the width class and build its package; written under a
        temporary name, then renamed, so a reader never sees half of it."""
        low, high = WIDTHS[width]
        rows = torch.export.Dim("rows", min=2, max=MAX_ROWS)  # a single row runs as two (QuantisedStack)
        tokens = torch.export.Dim("tokens", min=low, max=high)
        # Inductor picks its kernels' tiling for the example's sizes: a batch as the token budget
        # forms them (1024 tokens), not a toy one (measured 0.85x on a [128, 30] batch with [4, 4])
        rows_hint, tokens_hint = (48, 20) if width == "short" else (16, 64)
        h = torch.randn(rows_hint, tokens_hint, dim)  # [B, T, D]
        mask = torch.ones(h.shape[:2], dtype=torch.bool)  # [B, T]
        dims = {0: rows, 1: tokens}
        inputs: tuple[torch.Tensor, ...] = (h, mask)
        shapes: dict[str, dict[int, torch.export.Dim]] = {"h": dims, "mask": dims}
        if positions:
            inputs += (torch.arange(tokens_hint).expand(rows_hint, -1).contiguous(),)  # [B, T]
            shapes["positions"] = dims
        with torch.no_grad():
            program = torch.export.export(module, inputs, dynamic_shapes=shapes)
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".building-", suffix=".pt2")
        os.close(fd)
        try:
            # freezing lets Inductor lower the int8 linears to oneDNN's kernels with pre-packed weights;
            # it applies only with gradients off (else each call dequantises every weight: 0.3x)
            with torch.no_grad(), torch._inductor.config.patch(freezing=True):
                torch._inductor.aoti_compile_and_package(program, package_path=tmp)
            os.replace(tmp, self.path(start, stop, width))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

"""What this CPU is and what it runs natively: native bf16 matmuls (AMX or AVX512-BF16) decide
whether ``--dtype auto`` means bfloat16 or float32.

Without them torch emulates bf16 and autocast is several times slower than fp32 (measured on an
AVX2-only host: docs/performance.md), so bf16 is only a default where the hardware has it.
"""

from __future__ import annotations

import platform
from functools import cache

BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# Native int8 matmuls: AMX-INT8 tiles or AVX512-VNNI dot products. Our static int8 with the tuned
# pruning is measured 1.3x bf16 on a Xeon with AMX-INT8 and 1.5x on an AMD EPYC with AVX512-VNNI
# and no AMX (docs/performance.md). AVX2-only CPUs (AVX-VNNI at most) are not measured: no default.
INT8_FLAGS = frozenset({"amx_int8", "avx512_vnni"})
CPUINFO = "/proc/cpuinfo"


@cache
def _cpuinfo() -> str:
    try:
        with open(CPUINFO) as f:
            return f.read()
    except OSError:  # not Linux: no flags known, so the safe choice (float32) is made
        return ""


def _field(cpuinfo: str, name: str) -> str | None:
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The first processor's feature flags (Linux ``/proc/cpuinfo``); empty when unknown."""
    flags = _field(_cpuinfo() if cpuinfo is None else cpuinfo, "flags")
    return frozenset(flags.split()) if flags else frozenset()


def cpu_model(cpuinfo: str | None = None) -> str:
    return _field(_cpuinfo() if cpuinfo is None else cpuinfo, "model name") or platform.processor() or "unknown"


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether a CPU with these flags (default: this one) runs bf16 matmuls natively."""
    return bool((cpu_flags() if flags is None else flags) & BF16_FLAGS)


def native_int8(flags: frozenset[str] | None = None) -> bool:
    """Whether a CPU with these flags (default: this one) has the native int8 matmuls (AMX-INT8 or
    AVX512-VNNI) that make our static int8 the fastest dtype."""
    return bool((cpu_flags() if flags is None else flags) & INT8_FLAGS)

"""--dtype auto: bf16 only where the CPU runs it natively, read from /proc/cpuinfo."""

from __future__ import annotations

import pytest

from prune.config import EncoderOptions, resolve_dtype
from prune.cpu import cpu_flags, cpu_model, native_bf16

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ZEN4 = "model name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
AVX2_ONLY = "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(SAPPHIRE_RAPIDS, True), (ZEN4, True), (AVX2_ONLY, False), ("", False), ("processor\t: 0\n", False)],
)
def test_native_bf16_from_flags(cpuinfo: str, native: bool) -> None:
    assert native_bf16(cpu_flags(cpuinfo)) is native
    assert resolve_dtype("auto", bf16=native) == ("bfloat16" if native else "float32")


def test_flags_and_model_of_the_first_processor() -> None:
    flags = {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
    assert cpu_flags(SAPPHIRE_RAPIDS) == flags
    assert cpu_model(SAPPHIRE_RAPIDS) == "Intel(R) Xeon(R) Platinum 8488C"
    assert cpu_model(AVX2_ONLY) == "AMD EPYC"


@pytest.mark.parametrize("bf16", [True, False])
def test_an_explicit_dtype_is_kept(bf16: bool) -> None:
    assert resolve_dtype("float32", bf16=bf16) == "float32"
    assert resolve_dtype("bfloat16", bf16=bf16) == "bfloat16"


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match=r"dtype must be one of \('auto', 'float32', 'bfloat16', 'int8'\), got 'fp16'"):
        resolve_dtype("fp16")


def test_auto_is_resolved_once_by_the_encoder_options_and_the_encoder_runs_it(encoder) -> None:
    """`auto` never reaches the encoder: its options hold a concrete dtype, and the loaded
    matmul weights are in that dtype (bf16 weights only when bf16 was chosen)."""
    import torch

    from prune import Encoder

    options = EncoderOptions(dtype="auto")
    assert options.dtype in ("float32", "bfloat16")
    auto = Encoder(options=options)
    want = torch.bfloat16 if options.dtype == "bfloat16" else torch.float32
    assert auto.bert.layers[0].qkv.weight.dtype == want
    assert Encoder(options=EncoderOptions(dtype="float32")).bert.layers[0].qkv.weight.dtype == torch.float32

"""--dtype auto: bf16 only where the CPU runs it natively, read from /proc/cpuinfo; int8 for a
large job on a CPU with native int8 matmuls (AMX-INT8 or AVX512-VNNI)."""

from __future__ import annotations

import pytest

from prune.config import INT8_MIN_ROWS, EncoderOptions, job_dtype, resolve_dtype
from prune.cpu import cpu_flags, cpu_model, native_bf16, native_int8

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ZEN4 = "model name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16\n"
ICE_LAKE = "model name\t: Intel(R) Xeon(R) Platinum 8375C\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
ALDER_LAKE = "model name\t: 12th Gen Intel(R) Core(TM) i7\nflags\t\t: fpu sse2 avx2 fma avx_vnni\n"
AVX2_ONLY = "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(SAPPHIRE_RAPIDS, True), (ZEN4, True), (AVX2_ONLY, False), ("", False), ("processor\t: 0\n", False)],
)
def test_native_bf16_from_flags(cpuinfo: str, native: bool) -> None:
    assert native_bf16(cpu_flags(cpuinfo)) is native
    assert resolve_dtype("auto", bf16=native) == ("bfloat16" if native else "float32")


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(SAPPHIRE_RAPIDS, True), (ZEN4, True), (ICE_LAKE, True), (ALDER_LAKE, False), (AVX2_ONLY, False), ("", False)],
)
def test_a_large_job_means_int8_only_on_a_cpu_with_native_int8_matmuls(cpuinfo: str, native: bool) -> None:
    assert native_int8(cpu_flags(cpuinfo)) is native
    large = job_dtype("auto", INT8_MIN_ROWS, int8=native_int8(cpu_flags(cpuinfo)))
    assert large == ("int8" if native else "auto")  # "auto" then resolves to bf16 or fp32 as ever


@pytest.mark.parametrize("rows", [None, 0, INT8_MIN_ROWS - 1])
def test_a_small_job_or_one_of_unknown_size_keeps_auto(rows: int | None) -> None:
    assert job_dtype("auto", rows, int8=True) == "auto"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
def test_an_explicit_job_dtype_is_kept_at_any_size(dtype: str) -> None:
    assert job_dtype(dtype, 10 * INT8_MIN_ROWS, int8=True) == job_dtype(dtype, 0, int8=False) == dtype
    with pytest.raises(ValueError, match="dtype must be one of"):
        job_dtype("fp16", 0, int8=True)


def test_int8_pays_from_fewer_rows_when_its_graphs_are_built_and_never_where_it_cannot_run() -> None:
    from prune.config import INT8_MIN_ROWS_BUILT, job_dtype_choice

    assert INT8_MIN_ROWS_BUILT < INT8_MIN_ROWS
    rows = INT8_MIN_ROWS_BUILT
    assert job_dtype_choice("auto", rows, native=True, built=True).dtype == "int8"
    assert job_dtype_choice("auto", rows, native=True, built=False).dtype == "auto"  # to build: not yet worth it
    assert job_dtype_choice("auto", rows - 1, native=True, built=True).dtype == "auto"
    fallback = job_dtype_choice("auto", INT8_MIN_ROWS, native=True, problem="no working C++ compiler")
    assert fallback.dtype == "auto" and "cannot run: no working C++ compiler" in fallback.why
    assert "no native int8" in job_dtype_choice("auto", INT8_MIN_ROWS, native=False, built=True).why
    assert job_dtype_choice("int8", 0, native=False).dtype == "int8"  # explicit: kept (refused where it cannot run)
    with pytest.raises(ValueError, match="rows_per_actor must be a non-negative integer"):
        from workers.job_spec import JobSpec

        JobSpec(input="in", output="out", rows_per_actor=-1)


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


def test_int8_pays_per_encode_stream_which_share_one_load() -> None:
    from prune.config import INT8_MIN_ROWS_BUILT, job_dtype_choice
    from workers.job_encoder import rows_per_stream
    from workers.job_spec import JobSpec

    spec = JobSpec(input="in", output="out", rows_per_actor=4 * INT8_MIN_ROWS_BUILT - 1, cpus_per_actor=4)
    assert rows_per_stream(spec) == INT8_MIN_ROWS_BUILT  # rounded up: no stream is left out
    two = JobSpec(input="in", output="out", rows_per_actor=4 * INT8_MIN_ROWS_BUILT - 1, cpus_per_actor=2)
    assert job_dtype_choice("auto", rows_per_stream(two), native=True, built=True).dtype == "int8"
    eight = JobSpec(input="in", output="out", rows_per_actor=4 * INT8_MIN_ROWS_BUILT - 1, cpus_per_actor=8)
    assert job_dtype_choice("auto", rows_per_stream(eight), native=True, built=True).dtype == "auto"
    assert rows_per_stream(JobSpec(input="in", output="out")) is None

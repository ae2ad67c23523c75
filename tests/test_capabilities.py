"""CPU feature detection and the one-line refusals of precisions a machine cannot run."""
from __future__ import annotations

import pytest
import torch

from esr.capabilities import cpu_flags, cpu_summary, native_units, parse_cpu_flags, require_native_cpu
from esr.errors import EXIT_USAGE, EsrError
from esr.backends import create_backend
from esr.backends.torch_backend import check_torch_precision

AMX_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8\n"
EPYC_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd asimdhp asimddp bf16 i8mm\n"


def test_parse_flags_x86_and_arm():
    amx = parse_cpu_flags(AMX_CPUINFO)
    assert native_units("bf16", amx) == ["amx_bf16", "avx512_bf16"]
    assert native_units("int8", amx) == ["amx_int8", "avx512_vnni"]
    assert native_units("bf16", parse_cpu_flags(EPYC_CPUINFO)) == []
    assert cpu_summary(parse_cpu_flags(ARM_CPUINFO)) == {"bf16": ["bf16"], "int8": ["asimddp"], "fp16": ["asimdhp"]}
    assert parse_cpu_flags("no flags here") == frozenset()


def test_this_machine_has_flags():
    assert "sse2" in cpu_flags() or "asimd" in cpu_flags() or not cpu_flags()  # x86, Arm, or unknown


def test_bf16_refused_without_native_units():
    with pytest.raises(EsrError) as err:
        require_native_cpu("bf16", "torch backend", parse_cpu_flags(EPYC_CPUINFO))
    message = str(err.value)
    assert err.value.exit_code == EXIT_USAGE and "\n" not in message
    assert "AMX-BF16 or AVX512-BF16" in message and message.startswith("torch backend: bf16 on cpu")
    require_native_cpu("bf16", "torch backend", parse_cpu_flags(AMX_CPUINFO))  # no error


@pytest.mark.parametrize("device,precision,words", [
    ("cpu", "fp16", "fp16 needs CUDA"), ("cpu", "int8", "QDQ graph"), ("cpu", "fp8", "unknown precision"),
])
def test_torch_refusals_are_one_line(device, precision, words):
    with pytest.raises(EsrError) as err:
        check_torch_precision(device, precision)
    assert words in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == EXIT_USAGE


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_torch_cuda_refused_without_gpu():
    with pytest.raises(EsrError, match="no CUDA GPU"):
        check_torch_precision("cuda", "fp16")


@pytest.mark.skipif(not native_units("bf16"), reason="this CPU has no native bf16 (AMX-BF16 / AVX512-BF16)")
def test_torch_bf16_cpu_close_to_fp32(one_thread):
    from esr.archs.presets import build_model
    from esr.metrics import fidelity_psnr
    from esr.sample import sample_batch

    torch.manual_seed(0)
    model = build_model("rlfn_s", 4).eval()
    x = torch.from_numpy(sample_batch())[:, :, :48, :48]
    reference = create_backend("torch", model, "cpu", "fp32")(x)
    output = create_backend("torch", model, "cpu", "bf16")(x)
    assert output.dtype == torch.float32 and output.shape == (1, 3, 192, 192)
    assert next(model.parameters()).dtype == torch.float32  # the caller's module is untouched
    assert 35.0 < fidelity_psnr([reference], [output]) < 200.0  # bf16 changes the output, but little

"""fromzero's own matrix-vector kernel (fromzero.kernels): compiled at first use for this CPU, equal to
torch's products for fp32, bf16 and int8 weights on every code path (AVX-512, AVX2, portable C), kept
once per source and machine, and refused with a clear reason where it cannot be built."""

from __future__ import annotations

import ctypes
import subprocess

import pytest
import torch
import torch.nn.functional as F

from fromzero import machine
from fromzero.errors import InputError
from fromzero.generation import GenerationConfig, generate
from fromzero.generation import inference_layers
from fromzero.machine import cpu_has_fast_bf16
from fromzero.generation.inference_layers import GEMV_MAX_ROWS, GEMV_MAX_WIDENED_ROWS, GemvLinear
from fromzero.generation.quantize import KERNELS, linear_kernel, quantize
from fromzero.kernels import gemv as gemv_module
from fromzero.kernels import native
from fromzero.kernels.gemv import WEIGHT_KINDS, gemv
from fromzero.models import GPT, GPTConfig

needs_kernel = pytest.mark.skipif(not gemv_module.available(), reason=f"no native kernel here: "
                                  f"{gemv_module.unavailable_reason()}")


@pytest.fixture
def fresh(monkeypatch):
    """Forget the library loaded in this process, so a test's environment decides again."""
    for cached in (native.load, native.kernels_dir, gemv_module._outcome):
        cached.cache_clear()
    yield
    for cached in (native.load, native.kernels_dir, gemv_module._outcome):
        cached.cache_clear()


def reference(x, weight, bias=None, scale=None):
    w = weight.double() * (1 if scale is None else scale.double()[:, None])
    y = x.double() @ w.t()
    return y if bias is None else y + bias.double()


def assert_product(y, expected):
    """Equal up to float rounding; with bf16 weights on CPUs with bf16 dot products x is kept to 16 of its
    24 bits (gemv.c): about 1e-5 of the outputs' scale."""
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-4 + 2e-5 * float(expected.abs().max()))


def weights(kind, out_features, in_features, generator):
    w = torch.randn(out_features, in_features, generator=generator)
    if kind == "int8":
        return torch.randint(-127, 128, (out_features, in_features), generator=generator, dtype=torch.int8), \
            torch.rand(out_features, generator=generator) / 50 + 1e-3
    return w.to(torch.bfloat16 if kind == "bf16" else torch.float32), None


# ---------------------------------------------------------------- the products

@needs_kernel
@pytest.mark.parametrize("kind", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("in_features", [1, 15, 16, 33, 64, 770])
def test_gemv_equals_the_product_in_float64(kind, in_features):
    generator = torch.Generator().manual_seed(in_features)
    weight, scale = weights(kind, 37, in_features, generator)
    bias = torch.randn(37, generator=generator)
    for rows in (1, 3, 17):
        x = torch.randn(rows, in_features, generator=generator)
        for b in (None, bias):
            y = gemv(x, weight, b, scale)
            assert y.shape == (rows, 37) and y.dtype == torch.float32
            assert_product(y, reference(x, weight, b, scale))


@needs_kernel
@pytest.mark.skipif(machine.usable_cores() < 2, reason="needs 2 usable cores")
def test_gemv_is_bit_identical_on_one_and_two_threads():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 768, generator=generator)
    before = torch.get_num_threads()
    try:
        for kind in ("fp32", "bf16", "int8"):
            weight, scale = weights(kind, 3000, 768, generator)
            results = []
            for count in (1, 2):
                torch.set_num_threads(count)
                results.append(gemv(x, weight, None, scale))
            assert torch.equal(*results)
    finally:
        torch.set_num_threads(before)


FLAGS = {"avx512+bf16": ["-march=native"], "avx512": ["-march=native", "-mno-avx512bf16"],
         "avx2": ["-march=native", "-mno-avx512f"], "portable": []}
NEEDS = {"avx512+bf16": ("avx512_bf16",), "avx512": ("avx512f",), "avx2": ("avx2",), "portable": ()}


def compiled_for(isa: str, name: str, folder) -> ctypes.CDLL:
    """``<name>.c`` built with the flags that pick vector code path ``isa`` (skips where this CPU or machine
    cannot), loaded and checked to be that path."""
    if missing := [flag for flag in NEEDS[isa] if flag not in machine.cpu_flags()]:
        pytest.skip(f"this CPU has no {', '.join(missing)}")
    try:
        command = native.compiler()
    except native.NativeUnavailable as error:
        pytest.skip(str(error))
    library = folder / f"{name}-{isa}.so"
    subprocess.run([*command, "-O3", *FLAGS[isa], "-fopenmp", *native.COMMON_FLAGS, str(native.SOURCES / f"{name}.c"),
                    *native.LIBRARIES, "-o", str(library)], check=True)
    lib = ctypes.CDLL(str(library))
    if hasattr(lib, "fromzero_gemv_isa"):  # gemv.c and what includes it; others leave the vectors to the compiler
        lib.fromzero_gemv_isa.restype = ctypes.c_char_p
        assert lib.fromzero_gemv_isa().decode() == isa
    return lib


@pytest.mark.parametrize("isa", list(FLAGS))
def test_every_code_path_of_the_c_source_gives_the_product(isa, tmp_path):
    """The vector code is picked by the compiler's target: build each path on purpose and check it."""
    lib = compiled_for(isa, "gemv", tmp_path)
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    lib.fromzero_gemv.argtypes = [ctypes.c_int, pointer, pointer, pointer, pointer, pointer, size, size, size, ctypes.c_int]
    generator = torch.Generator().manual_seed(1)
    for kind in ("fp32", "bf16", "int8"):
        for in_features in (7, 40, 333, 768):
            weight, scale = weights(kind, 21, in_features, generator)
            x, bias, y = torch.randn(2, in_features, generator=generator), torch.randn(21, generator=generator), torch.empty(2, 21)
            assert lib.fromzero_gemv(WEIGHT_KINDS[weight.dtype], weight.data_ptr(), None if scale is None else scale.data_ptr(),
                                     x.data_ptr(), bias.data_ptr(), y.data_ptr(), 21, in_features, 2, 2) == 0
            assert_product(y, reference(x, weight, bias, scale))
    assert lib.fromzero_gemv(7, None, None, None, None, None, 0, 0, 0, 1) == 1  # an unknown weight kind


# ---------------------------------------------------------------- built once, or refused with the reason

@needs_kernel
def test_the_library_is_compiled_once_and_found_again(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("FROMZERO_HOME", str(tmp_path))
    first = native.build("gemv")
    assert first.parent == tmp_path / "kernels" and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    assert native.build("gemv") == first and first.stat().st_mtime_ns == stamp  # not compiled again
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary file left behind
    monkeypatch.setattr(native, "fingerprint", lambda: "another-machine")
    assert native.build("gemv") != first  # a new CPU or torch compiles its own


@needs_kernel
def test_a_damaged_library_is_built_again_and_a_read_only_home_uses_a_private_folder(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("FROMZERO_HOME", str(tmp_path / "home"))
    built = native.build("gemv")
    built.write_bytes(b"not a shared library")
    native.load.cache_clear()
    assert native.load("gemv").fromzero_gemv_isa  # rebuilt, loaded
    assert built.stat().st_size > 1000
    for cached in (native.load, native.kernels_dir):
        cached.cache_clear()
    (tmp_path / "file").write_text("a file where the home's folder would be")
    monkeypatch.setenv("FROMZERO_HOME", str(tmp_path / "file" / "home"))
    assert native.build("gemv").parent.name.startswith("fromzero-kernels-")


def test_without_a_compiler_the_reason_is_given_and_torch_is_used(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("FROMZERO_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler-here")
    assert not gemv_module.available()
    assert "no C compiler found (no-such-compiler-here)" in gemv_module.unavailable_reason()
    assert "gemv" not in linear_kernel(tiny_model(), "fp32")
    monkeypatch.setenv("FROMZERO_LINEAR_KERNEL", "gemv")
    with pytest.raises(InputError, match="FROMZERO_LINEAR_KERNEL=gemv asks for a kernel this machine cannot run: no C compiler"):
        quantize(tiny_model(), "fp32")


def test_a_forced_kernel_is_the_only_one_probed(fresh, monkeypatch):
    monkeypatch.setenv("FROMZERO_LINEAR_KERNEL", "transposed")
    monkeypatch.setenv("CC", "false")  # would fail if anything tried to build the C kernel
    assert linear_kernel(tiny_model(), "fp32") == "transposed"
    assert gemv_module._outcome.cache_info().misses == 0  # the C kernel was never built nor loaded


def test_a_compiler_that_fails_leaves_nothing_behind(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("FROMZERO_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # runs, and fails for every set of flags
    reason = gemv_module.unavailable_reason()
    assert reason.startswith("gemv.c did not compile with false (-O3 -march=native -fopenmp:")
    assert not any((tmp_path / "kernels").iterdir())


def test_fromzero_native_0_turns_the_kernel_off(fresh, monkeypatch):
    monkeypatch.setenv("FROMZERO_NATIVE", "0")
    assert gemv_module.unavailable_reason() == "FROMZERO_NATIVE=0 turns fromzero's C kernels off"


# ---------------------------------------------------------------- the layer and the model

def tiny_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=64)).eval()


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
def test_gemv_linear_agrees_with_torch_for_few_rows_and_many(dtype):
    linear = torch.nn.Linear(40, 24)
    layer = GemvLinear(linear, dtype)
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.int8: 3e-2}[dtype]
    with torch.inference_mode():
        for rows in (1, layer.max_rows, layer.max_rows + 3):  # the kernel, then torch's matmul on the same weights
            x = torch.randn(rows, 2, 40)
            torch.testing.assert_close(layer(x), F.linear(x, linear.weight, linear.bias), rtol=tolerance, atol=tolerance)
    widened = dtype == torch.int8 or (dtype == torch.bfloat16 and not cpu_has_fast_bf16())
    assert layer.max_rows == (GEMV_MAX_WIDENED_ROWS if widened else GEMV_MAX_ROWS)
    if dtype == torch.float32:
        assert layer.weight.data_ptr() == linear.weight.data_ptr()  # fp32 shares the weight (a tied head: no copy)
    with pytest.raises(InputError, match="inference only"):
        layer(torch.randn(1, 40, requires_grad=True))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.int8])
@pytest.mark.parametrize("native_bf16", [True, False])
def test_many_rows_multiply_in_bf16_only_on_a_cpu_with_bf16_instructions(dtype, native_bf16, monkeypatch):
    """Without them torch's bf16 products run at a few GFLOP/s: the weight is widened to fp32 instead."""
    monkeypatch.setattr(inference_layers, "cpu_has_fast_bf16", lambda: native_bf16)
    linear = torch.nn.Linear(64, 24)
    layer = GemvLinear(linear, dtype)
    x = torch.randn(layer.max_rows + 1, 64)
    if native_bf16:
        expected = F.linear(x.to(torch.bfloat16), layer.weight.to(torch.bfloat16)).float()
    else:
        expected = F.linear(x, layer.weight.float())
    expected = (expected if layer.scale is None else expected * layer.scale) + linear.bias
    with torch.inference_mode():
        assert torch.equal(layer(x), expected)
        monkeypatch.setattr(inference_layers, "WIDENED_SLICE_BYTES", 5 * 64 * 4)  # slices of 5 or 10 of 24 rows
        torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6)


@needs_kernel
@pytest.mark.parametrize("mode", ["fp32", "bf16", "int8"])
def test_a_model_decoded_with_the_kernel_gives_the_fp32_tokens(mode, monkeypatch):
    monkeypatch.setenv({"fp32": "FROMZERO_LINEAR_KERNEL", "bf16": "FROMZERO_BF16_KERNEL",
                        "int8": "FROMZERO_INT8_KERNEL"}[mode], "gemv")
    model = tiny_model()
    ids = torch.randint(0, 300, (1, 10), generator=torch.Generator().manual_seed(3))
    light = quantize(tiny_model(), mode)
    assert isinstance(light.lm_head, GemvLinear) and next(light.parameters()).dtype == torch.float32
    with torch.inference_mode():
        reference = model(ids).logits.log_softmax(-1)
        approx = light(ids).logits.log_softmax(-1)
    kl = (reference.exp() * (reference - approx)).sum(-1).mean()
    assert float(kl) < (1e-7 if mode == "fp32" else 0.01)  # fp32: float rounding (the prompt goes through oneDNN)
    assert torch.equal(generate(light, ids, GenerationConfig(max_new_tokens=16)),
                       generate(model, ids, GenerationConfig(max_new_tokens=16)))


@needs_kernel
def test_a_lora_adapter_beside_a_bf16_gemv_layer_computes_in_fp32(monkeypatch):
    from fromzero.finetune.lora import LoRAConfig, add_adapter

    monkeypatch.setenv("FROMZERO_BF16_KERNEL", "gemv")
    model = quantize(tiny_model(), "bf16")
    add_adapter(model, "a", LoRAConfig(r=4, target_modules=["c_attn"]))
    ids = torch.randint(0, 300, (1, 6))
    with torch.inference_mode():
        assert model(ids).logits.dtype == torch.float32


def test_every_mode_names_its_kernels():
    assert set(KERNELS) == {"fp32", "bf16", "int8"} and all("gemv" in names for names in KERNELS.values())



@needs_kernel
def test_an_adapter_cannot_be_merged_into_a_converted_layer(monkeypatch):
    from fromzero.finetune.lora import LoRAConfig, add_adapter, merge

    monkeypatch.setenv("FROMZERO_INT8_KERNEL", "gemv")
    model = quantize(tiny_model(), "int8")
    add_adapter(model, "a", LoRAConfig(r=4, target_modules=["c_attn"]))
    with pytest.raises(InputError, match="merge before converting"):
        merge(model)

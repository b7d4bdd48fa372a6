"""The fused decoding step (fromzero.kernels.decode_step, fromzero.generation.fused_step): a whole step in
one call to C gives the eager step's logits to float rounding and the same tokens (transformers' for a
GPT-2), for every weight kind and model variant it accepts; everything it does not know stays eager."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fromzero.errors import InputError
from fromzero.generation import GenerationConfig, generate, quantize
from fromzero.generation import fused_step
from fromzero.generation.engine import CachedDecoder
from fromzero.kernels import decode_step, native
from fromzero.models import GPT, GPTConfig
from fromzero.nn import activate
from test_kernels_gemv import FLAGS, compiled_for  # each vector code path, built on purpose

needs_step = pytest.mark.skipif(decode_step.unavailable_reason() is not None,
                                reason=f"no native kernel here: {decode_step.unavailable_reason()}")


@pytest.fixture(autouse=True)
def gemv_everywhere(monkeypatch):
    """conftest pins torch's kernels for the rest of the suite; here every mode takes fromzero's gemv."""
    for name in ("FROMZERO_LINEAR_KERNEL", "FROMZERO_BF16_KERNEL", "FROMZERO_INT8_KERNEL"):
        monkeypatch.setenv(name, "gemv")
    monkeypatch.delenv("FROMZERO_FUSED_STEP", raising=False)


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    settings = dict(vocab_size=97, block_size=48, n_layer=2, n_head=4, n_embd=40, dropout=0.0)
    return GPT(GPTConfig(**(settings | overrides))).eval()


def steps(model, ids, count, fused: bool, monkeypatch, mask=None):
    """Logits of ``count`` single-token steps after the prompt ``ids``, fused or eager."""
    monkeypatch.setenv("FROMZERO_FUSED_STEP", "1" if fused else "0")
    with torch.inference_mode():
        decoder = CachedDecoder(model, ids, mask, count)
        assert (decoder.fused is not None) == fused
        logits = [decoder.prefill()]
        for i in range(count):
            logits.append(decoder.step(torch.full((ids.size(0),), (7 * i) % 97)))
    return torch.stack(logits)


def left_padding(ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """A mask giving row r only its last ``lengths[r]`` tokens."""
    return (torch.arange(ids.size(1)) >= ids.size(1) - torch.tensor(lengths)[:, None]).long()


# ---------------------------------------------------------------- the pieces of the step

@needs_step
@pytest.mark.parametrize("kind", ["gelu_new", "gelu", "relu"])
def test_activation_is_as_exact_as_torch_over_the_whole_float_range(kind):
    x = torch.linspace(-12, 12, 10_001)
    truth = activate(x.double(), kind)
    error = (decode_step.activate(x, kind).double() - truth).abs()
    assert bool((error <= 1e-7 + 1e-6 * x.double().abs()).all())  # a few ulps of x, also where GELU is ~1e-30
    extremes = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0, 1e4, -1e4, 3e38, -3e38, math.inf, -math.inf, math.nan])
    torch.testing.assert_close(decode_step.activate(extremes, kind), activate(extremes.double(), kind).float(),
                               equal_nan=True)  # torch in float32 overflows at 3e38; float64 does not, nor does C


@needs_step
def test_softmax_weights_survive_scores_far_apart(monkeypatch):
    """Scores 1e4 apart: the small ones' e^x underflows to exactly 0 instead of overflowing."""
    model = quantize(tiny(), "fp32")
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight.mul_(300)  # huge queries and keys
    ids = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(2))
    fused, eager = steps(model, ids, 5, True, monkeypatch), steps(model, ids, 5, False, monkeypatch)
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- the same numbers as the eager step

@needs_step
@pytest.mark.parametrize("mode", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("rows", [1, 3])
def test_fused_steps_give_the_eager_logits(mode, rows, monkeypatch):
    model = quantize(tiny(), mode, rows=rows)
    ids = torch.randint(0, 97, (rows, 9), generator=torch.Generator().manual_seed(1))
    fused, eager = steps(model, ids, 30, True, monkeypatch), steps(model, ids, 30, False, monkeypatch)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=2e-5)


@needs_step
@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_left_padded_rows_give_the_eager_logits(mode, monkeypatch):
    model = quantize(tiny(pos_encoding="sinusoidal") if mode == "int8" else tiny(), mode, rows=3)
    ids = torch.randint(0, 97, (3, 9), generator=torch.Generator().manual_seed(11))
    mask = left_padding(ids, [9, 4, 1])
    fused, eager = steps(model, ids, 20, True, monkeypatch, mask), steps(model, ids, 20, False, monkeypatch, mask)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=2e-5)


@needs_step
def test_fused_logits_are_bit_identical_on_one_and_two_threads(monkeypatch):
    """Every sum in the C step is made by one thread in a fixed order: the thread count changes nothing."""
    model = quantize(tiny(), "int8", rows=2)
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(14))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the C step runs on torch's thread count
        one = steps(model, ids, 6, True, monkeypatch)
        torch.set_num_threads(2)
        two = steps(model, ids, 6, True, monkeypatch)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@needs_step
@pytest.mark.parametrize("variant", [dict(activation="gelu"), dict(activation="relu"), dict(bias=False),
                                     dict(pos_encoding="sinusoidal"), dict(tie_weights=False), dict(n_inner=72),
                                     dict(layer_norm_epsilon=1e-3)])
def test_every_model_variant_is_fused_exactly(variant, monkeypatch):
    model = quantize(tiny(**variant), "fp32")
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(3))
    fused, eager = steps(model, ids, 12, True, monkeypatch), steps(model, ids, 12, False, monkeypatch)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=2e-5)


@needs_step
@pytest.mark.parametrize("config", [
    GenerationConfig(max_new_tokens=70),  # past block_size 48: the window slides (eager), then fused again
    GenerationConfig(max_new_tokens=30),  # the padded batch below fits: fused with its rows' own columns
    GenerationConfig(max_new_tokens=30, do_sample=True, temperature=1.5, seed=3),
    GenerationConfig(max_new_tokens=20, num_beams=3),  # beams reorder the cache between fused steps
    GenerationConfig(max_new_tokens=20, do_sample=True, top_k=20, seed=4, num_return_sequences=3),
])
def test_generate_gives_the_same_tokens_fused_or_eager(config, monkeypatch):
    model = quantize(tiny(), "fp32", rows=3)
    ids = torch.randint(0, 97, (1, 8), generator=torch.Generator().manual_seed(5))
    batch = torch.randint(0, 97, (2, 8), generator=torch.Generator().manual_seed(5))
    mask = left_padding(batch, [8, 3])
    monkeypatch.setenv("FROMZERO_FUSED_STEP", "0")
    eager = generate(model, ids, config)
    eager_batch = generate(model, batch, config, mask) if config.max_new_tokens + 8 <= 48 else None
    monkeypatch.setenv("FROMZERO_FUSED_STEP", "1")
    assert torch.equal(generate(model, ids, config), eager)
    if eager_batch is not None:  # padded rows do not slide: only when they fit
        assert torch.equal(generate(model, batch, config, mask), eager_batch)


@needs_step
def test_a_gpt2_checkpoint_gives_transformers_tokens(tmp_path, transformers):
    config = transformers.GPT2Config(vocab_size=300, n_positions=64, n_embd=48, n_layer=3, n_head=4)
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(config).eval()
    reference.save_pretrained(tmp_path)
    model = quantize(GPT.from_pretrained(tmp_path), "int8")  # the weights as int8; fp32 below
    assert fused_step.why_not(model) is None
    exact = quantize(GPT.from_pretrained(tmp_path), "fp32")
    ids = torch.randint(0, 300, (1, 10), generator=torch.Generator().manual_seed(6))
    expected = reference.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=30, do_sample=False,
                                  pad_token_id=0)
    assert torch.equal(generate(exact, ids, GenerationConfig(max_new_tokens=30)), expected)
    assert generate(model, ids, GenerationConfig(max_new_tokens=30)).shape == expected.shape


@pytest.mark.parametrize("isa", list(FLAGS))
def test_every_code_path_of_the_c_step_gives_the_eager_logits(isa, tmp_path, monkeypatch):
    """decode_step.c includes gemv.c, whose vector code the compiler's target picks: build each on purpose."""
    lib = decode_step.bind(compiled_for(isa, "decode_step", tmp_path))
    ids = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(10))
    x = torch.linspace(-12, 12, 1001)
    for mode in ("fp32", "bf16", "int8"):
        model = quantize(tiny(), mode)
        eager = steps(model, ids, 8, False, monkeypatch)
        with monkeypatch.context() as patch:
            patch.setattr(decode_step, "_outcome", lambda: lib)
            fused = steps(model, ids, 8, True, patch)
            torch.testing.assert_close(decode_step.activate(x, "gelu_new"), activate(x.double(), "gelu_new").float(),
                                       rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=2e-5)


@needs_step
@pytest.mark.parametrize("mode", ["fp32", "int8"])
@pytest.mark.parametrize("adapters_first", [True, False])
def test_lora_adapters_are_added_in_the_fused_step_as_the_model_adds_them(mode, adapters_first, monkeypatch):
    """The chat loads adapters, then converts (their own layers become gemv layers too); a library user may
    add one after converting (plain Linear layers beside gemv ones). Either way, the active adapter's update
    is in the fused step, and switching adapters off leaves the base model."""
    from fromzero.finetune.lora import LoRAConfig, add_adapter, disabled_adapters

    model = tiny()
    if not adapters_first:
        quantize(model, mode, rows=2)
    add_adapter(model, config=LoRAConfig(r=4, alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2, generator=torch.Generator().manual_seed(len(name)))  # B starts at 0
    if adapters_first:
        quantize(model, mode, rows=2)
    model.eval()
    assert fused_step.why_not(model) is None
    ids = torch.randint(0, 97, (2, 6), generator=torch.Generator().manual_seed(12))
    fused, eager = steps(model, ids, 10, True, monkeypatch), steps(model, ids, 10, False, monkeypatch)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=2e-5)
    with disabled_adapters(model):
        base = steps(model, ids, 10, True, monkeypatch)
        torch.testing.assert_close(base, steps(model, ids, 10, False, monkeypatch), rtol=1e-5, atol=2e-5)
    assert (base - fused).abs().max() > 1e-2  # the adapter did change the logits


@needs_step
def test_a_servers_model_keeps_both_layouts_when_one_row_and_a_full_batch_differ(monkeypatch):
    """quantize(rows=8, rows_vary=True) where packed wins at 8 rows and gemv at 1: gemv layers with a packed
    copy, which take up to 4 rows through gemv (fused) and more through oneDNN, all equal to the fp32 model."""
    import importlib

    from fromzero.generation.inference_layers import GemvLinear, PackedLinear, onednn_packing_works

    if not onednn_packing_works():
        pytest.skip("this torch cannot pack weights for oneDNN")
    quantize_module = importlib.import_module("fromzero.generation.quantize")
    monkeypatch.setattr(quantize_module, "linear_kernel", lambda model, mode, rows: "gemv" if rows == 1 else "packed")
    reference = tiny()
    model = quantize(tiny(), "fp32", rows=8, rows_vary=True)
    layers = [m for m in model.modules() if isinstance(m, GemvLinear)]
    assert len(layers) == 9 and all(m.packed_weight is not None for m in layers)
    assert fused_step.why_not(model) is None
    ids = torch.randint(0, 97, (6, 9), generator=torch.Generator().manual_seed(13))
    with torch.inference_mode():
        for rows in (1, 3, 6):  # gemv, gemv, packed
            torch.testing.assert_close(model(ids[:rows]).logits, reference(ids[:rows]).logits, rtol=1e-5, atol=1e-5)
    config = GenerationConfig(max_new_tokens=12)
    assert torch.equal(generate(model, ids, config), generate(reference, ids, config))  # 6 rows: eager, packed
    assert torch.equal(generate(model, ids[:1], config), generate(reference, ids[:1], config))  # fused
    assert type(quantize(tiny(), "fp32", rows=8).transformer.h[0].attn.c_attn) is PackedLinear  # rows_vary not asked
    monkeypatch.setattr("fromzero.machine.available_memory", lambda: 1000)  # no room for a second copy
    assert type(quantize(tiny(), "fp32", rows=8, rows_vary=True).lm_head) is PackedLinear
    with pytest.raises(InputError, match="cannot be packed"):
        GemvLinear(torch.nn.Linear(8, 4), torch.int8, packed_batches=True)


# ---------------------------------------------------------------- what stays eager, and why

def test_an_unconverted_packed_hooked_or_training_model_stays_eager(monkeypatch):
    plain = tiny()
    decode_step._outcome.cache_clear()
    try:
        assert "gemv" in fused_step.why_not(plain)
        generate(plain, torch.tensor([[1, 2, 3]]), GenerationConfig(max_new_tokens=3))
        assert decode_step._outcome.cache_info().misses == 0  # a model that cannot be fused compiles no C
    finally:
        decode_step._outcome.cache_clear()
    monkeypatch.setenv("FROMZERO_LINEAR_KERNEL", "packed")
    assert "gemv" in fused_step.why_not(quantize(tiny(), "fp32"))
    monkeypatch.setenv("FROMZERO_LINEAR_KERNEL", "gemv")
    training = quantize(tiny(), "fp32").train()
    assert fused_step.why_not(training) is None and fused_step.fused_step_for(training) is None  # dropout
    hooked = quantize(tiny(), "fp32")
    hooked.transformer.h[1].mlp.register_forward_hook(lambda *args: None)
    assert "hook" in fused_step.why_not(hooked)
    monkeypatch.setenv("FROMZERO_FUSED_STEP", "0")
    assert "FROMZERO_FUSED_STEP" in fused_step.why_not(quantize(tiny(), "fp32"))


@needs_step
def test_masks_with_holes_and_wide_batches_take_the_eager_step():
    model = quantize(tiny(), "fp32")
    ids = torch.randint(1, 97, (2, 6), generator=torch.Generator().manual_seed(7))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    assert CachedDecoder(model, ids, mask, 5).fused is not None  # left padding: fused
    mask[1, 3] = 0
    assert CachedDecoder(model, ids, mask, 5).fused is None  # a hole in the middle: eager
    decoder = CachedDecoder(model, ids, None, 5)
    assert decoder.fused is not None and decoder.fused.max_rows == 4
    with torch.inference_mode():
        decoder.prefill()
        decoder.select(torch.arange(2).repeat_interleave(3))  # 6 rows: more than gemv takes
        seq_len = decoder.cache.seq_len
        assert decoder.step(torch.zeros(6, dtype=torch.long)).shape == (6, 97)
    assert decoder.cache.seq_len == seq_len + 1


@needs_step
def test_the_step_refuses_caches_that_do_not_fit():
    model = quantize(tiny(), "fp32")
    step = fused_step.FusedStep(model)
    cache = __import__("fromzero.models", fromlist=["KVCache"]).KVCache.for_model(model, 1, 4)
    cache.seq_len = 4  # full
    with pytest.raises(ValueError, match="room at position 4"):
        step(torch.tensor([1]), cache)
    with pytest.raises(ValueError, match="cannot be fused"):
        fused_step.FusedStep(tiny())


def test_without_the_native_kernel_every_step_is_eager(monkeypatch):
    from fromzero.kernels import gemv as gemv_module

    caches = (native.load, native.kernels_dir, gemv_module._outcome, decode_step._outcome)
    for cached in caches:
        cached.cache_clear()
    monkeypatch.setenv("FROMZERO_NATIVE", "0")
    monkeypatch.setenv("FROMZERO_LINEAR_KERNEL", "plain")
    try:
        model = quantize(tiny(), "fp32")
        assert "FROMZERO_NATIVE=0" in fused_step.unavailable_reason() and fused_step.why_not(model) is not None
        ids = torch.randint(0, 97, (1, 5), generator=torch.Generator().manual_seed(8))
        assert generate(model, ids, GenerationConfig(max_new_tokens=5)).shape == (1, 10)
    finally:
        for cached in caches:
            cached.cache_clear()


@needs_step
def test_the_fused_step_computes_what_the_model_computes_by_hand():
    """One step written out with torch ops on the converted model's own weights, against the C step."""
    model = quantize(tiny(), "int8")
    ids = torch.randint(0, 97, (1, 4), generator=torch.Generator().manual_seed(9))
    with torch.inference_mode():
        decoder = CachedDecoder(model, ids, None, 1)
        decoder.prefill()
        keys = [k[:, :, :4].clone() for k in decoder.cache.keys]
        values = [v[:, :, :4].clone() for v in decoder.cache.values]
        logits = decoder.fused(torch.tensor([11]), decoder.cache)
        x = model.transformer.wte.weight[11] + model.transformer.wpe.weight[4]
        for block, k_past, v_past in zip(model.transformer.h, keys, values):
            q, k, v = block.attn.c_attn(F.layer_norm(x, (40,), block.ln_1.weight, block.ln_1.bias)).split(40)
            k_all = torch.cat([k_past[0], k.view(4, 1, 10)], 1)
            v_all = torch.cat([v_past[0], v.view(4, 1, 10)], 1)
            weights = torch.softmax(q.view(4, 1, 10) @ k_all.transpose(1, 2) / math.sqrt(10), -1)
            x = x + block.attn.c_proj((weights @ v_all).reshape(40))
            x = x + block.mlp.c_proj(F.gelu(block.mlp.c_fc(block.ln_2(x)), approximate="tanh"))
        expected = model.lm_head(model.transformer.ln_f(x))
    torch.testing.assert_close(logits[0], expected, rtol=1e-5, atol=2e-5)

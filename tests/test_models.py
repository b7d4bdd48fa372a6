"""The GPT model: presets, initialisation, the KV cache, masks, losses and input errors."""

from __future__ import annotations

import math

import pytest
import torch

from fromzero.errors import InputError
from fromzero.models import GPT, PRESETS, GPTConfig, KVCache

SMALL = dict(vocab_size=97, block_size=32, n_layer=3, n_head=4, n_embd=32)


def small_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():  # random biases and LayerNorms too, so no path hides behind zeros and ones
        for name, param in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                param.normal_(0.0 if name.endswith("bias") else 1.0, 0.1)
    return model


def hf_twin(transformers, model: GPT, tmp_path):
    """The same model in transformers (from the ``transformers`` fixture)."""
    model.save_pretrained(tmp_path)
    return transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()


# ----- configuration and parameters -----


@pytest.mark.parametrize("name", ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"])
def test_gpt2_family_presets_have_the_released_parameter_counts(name):
    expected = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
                "gpt2-xl": 1_557_611_200, "distilgpt2": 81_912_576}[name]
    with torch.device("meta"):
        model = GPT(GPTConfig.preset(name))
    assert model.num_params() == expected
    config = model.config
    embeddings = config.vocab_size * config.n_embd + config.block_size * config.n_embd
    assert model.num_params(embeddings=False) == expected - embeddings


def test_small_presets_and_overrides():
    with torch.device("meta"):
        tiny, mini = GPT(GPTConfig.preset("tiny")), GPT(GPTConfig.preset("mini", vocab_size=65))
    assert 0.05e6 < tiny.num_params() < 0.2e6
    assert 0.7e6 < mini.num_params() < 1.2e6
    assert (mini.config.n_layer, mini.config.n_head, mini.config.n_embd, mini.config.block_size) == (4, 4, 128, 128)
    assert set(PRESETS) == {"tiny", "mini", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"}
    with pytest.raises(InputError, match="unknown preset 'gpt3'.*tiny"):
        GPTConfig.preset("gpt3")
    with pytest.raises(InputError, match="unknown GPTConfig field.*n_layers"):
        GPTConfig.preset("tiny", n_layers=3)


@pytest.mark.parametrize(
    "bad, message",
    [(dict(n_embd=30, n_head=4), "divisible"), (dict(dropout=1.0), "dropout"), (dict(n_layer=0), "n_layer"),
     (dict(pos_encoding="rotary"), "pos_encoding"), (dict(activation="swish"), "activation")],
)
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(InputError, match=message):
        GPTConfig(**{**SMALL, **bad})


def test_gpt2_initialisation_scales_residual_projections():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=500, block_size=64, n_layer=8, n_head=4, n_embd=128))
    residual_std = 0.02 / math.sqrt(2 * 8)
    for name, param in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert param.std().item() == pytest.approx(residual_std, rel=0.05), name
        elif name.endswith(("c_attn.weight", "c_fc.weight", "wte.weight", "wpe.weight")):
            assert param.std().item() == pytest.approx(0.02, rel=0.05), name
        elif name.endswith("bias"):
            assert not param.any(), name
    assert model.lm_head.weight is model.transformer.wte.weight


# ----- forward: loss, dropout, attention paths -----


def test_loss_equals_transformers_shifted_labels(transformers, tmp_path):
    model = small_model()
    hf = hf_twin(transformers, model, tmp_path)
    ids = torch.randint(0, 97, (2, 16))
    targets = torch.cat([ids[:, 1:], torch.full((2, 1), -100)], dim=1)
    targets[0, 3] = -100
    labels = ids.clone()
    labels[0, 4] = -100  # transformers shifts labels itself: label t+1 is the target of position t
    with torch.no_grad():
        ours = model(ids, targets).loss
        theirs = hf(ids, labels=labels).loss
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)


def test_explicit_attention_path_gives_the_same_logits():
    model = small_model()
    ids = torch.randint(0, 97, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, :6] = 0
    for kwargs in (dict(), dict(attention_mask=mask)):
        fast = model(ids, **kwargs)
        slow = model(ids, output_attentions=True, **kwargs)
        assert fast.attentions is None and len(slow.attentions) == 3
        torch.testing.assert_close(fast.logits, slow.logits, atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    model = small_model(dropout=0.2)
    ids = torch.randint(0, 97, (2, 12))
    assert torch.equal(model(ids).logits, model(ids).logits)
    model.train()
    assert not torch.equal(model(ids).logits, model(ids).logits)


def test_fully_padded_rows_stay_finite():
    model = small_model()
    ids = torch.randint(0, 97, (2, 8))
    mask = torch.ones_like(ids)
    mask[0] = 0  # a row with no real token at all
    mask[1, :5] = 0
    for kwargs in (dict(), dict(output_attentions=True)):
        assert torch.isfinite(model(ids, attention_mask=mask, **kwargs).logits).all()


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(1)
    model = GPT(GPTConfig(**SMALL)).train()
    ids = torch.arange(33).remainder(7).unsqueeze(0).repeat(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(ids[:, :-1], ids[:, 1:]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert model.lm_head.weight is model.transformer.wte.weight  # still one shared matrix


def test_sinusoidal_positions_model_runs_and_caches():
    model = small_model(pos_encoding="sinusoidal")
    ids = torch.randint(0, 97, (1, 10))
    full = model(ids).logits
    out = model(ids[:, :6], use_cache=True)
    step = model(ids[:, 6:], past_key_values=out.past_key_values).logits
    torch.testing.assert_close(step, full[:, 6:], atol=1e-5, rtol=1e-5)


# ----- KV cache -----


def test_cached_decoding_equals_uncached_at_every_step():
    model = small_model()
    ids = torch.randint(0, 97, (2, 24))
    full = model(ids).logits
    out = model(ids[:, :5], use_cache=True)
    cache = out.past_key_values
    assert isinstance(cache, KVCache) and cache.seq_len == 5 and cache.max_len == 32
    torch.testing.assert_close(out.logits, full[:, :5], atol=1e-5, rtol=1e-5)
    for t in range(5, 20):  # one token at a time
        out = model(ids[:, t : t + 1], past_key_values=cache)
        assert out.past_key_values is cache and cache.seq_len == t + 1
        torch.testing.assert_close(out.logits[:, 0], full[:, t], atol=1e-5, rtol=1e-5)
    out = model(ids[:, 20:], past_key_values=cache)  # several new tokens after a cache
    torch.testing.assert_close(out.logits, full[:, 20:], atol=1e-5, rtol=1e-5)


def test_cached_decoding_with_left_padding_equals_uncached(transformers, tmp_path):
    model = small_model()
    hf = hf_twin(transformers, model, tmp_path)
    ids = torch.randint(0, 97, (3, 20))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    mask[2, :9] = 0
    cache = KVCache.for_model(model, batch_size=3, max_len=20)
    out = model(ids[:, :10], attention_mask=mask[:, :10], past_key_values=cache)
    for t in range(10, 20):
        out = model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], past_key_values=cache)
        uncached = model(ids[:, : t + 1], attention_mask=mask[:, : t + 1]).logits[:, -1]
        torch.testing.assert_close(out.logits[:, 0], uncached, atol=1e-5, rtol=1e-5)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        reference = hf(ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    assert (out.logits[:, 0] - reference).abs().max() < 1e-4


def test_cache_reorder_selects_and_duplicates_rows():
    model = small_model()
    ids = torch.randint(0, 97, (3, 12))
    cache = model(ids[:, :8], use_cache=True).past_key_values
    index = torch.tensor([2, 2, 0])
    cache.reorder(index)
    step = model(ids[index, 8:9], past_key_values=cache).logits[:, 0]
    torch.testing.assert_close(step, model(ids[index, :9]).logits[:, -1], atol=1e-5, rtol=1e-5)
    cache.reorder(torch.tensor([0, 1, 2, 2, 1]))  # batch grows, e.g. beams
    grown = ids[index][[0, 1, 2, 2, 1]]
    assert cache.batch_size == 5 and cache.seq_len == 9
    step = model(grown[:, 9:10], past_key_values=cache).logits[:, 0]
    torch.testing.assert_close(step, model(grown[:, :10]).logits[:, -1], atol=1e-5, rtol=1e-5)


# ----- input errors -----


def test_context_longer_than_block_size_is_an_error_with_the_policy():
    model = small_model()
    with pytest.raises(InputError, match=r"33 tokens .* context of 32 .*keep only the last 32"):
        model(torch.zeros(1, 33, dtype=torch.long))
    cache = model(torch.zeros(1, 30, dtype=torch.long), use_cache=True).past_key_values
    with pytest.raises(InputError, match=r"30 cached \+ 3 new"):
        model(torch.zeros(1, 3, dtype=torch.long), past_key_values=cache)
    small_cache = KVCache.for_model(model, 1, max_len=4)
    with pytest.raises(InputError, match="KV cache is full"):
        model(torch.zeros(1, 5, dtype=torch.long), past_key_values=small_cache)


def test_bad_shapes_and_ids_are_input_errors():
    model = small_model()
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(InputError, match="batch, seq_len"):
        model(ids[0])
    with pytest.raises(InputError, match="attention_mask must have shape"):
        model(ids, attention_mask=torch.ones(2, 4))
    with pytest.raises(InputError, match="vocab_size"):
        model(torch.full((1, 3), 97))
    with pytest.raises(InputError, match="targets"):
        model(ids, ids[:, :4])
    with pytest.raises(InputError, match="position_ids must lie"):
        model(ids, position_ids=torch.full((2, 5), 32))
    cache = model(ids, use_cache=True).past_key_values
    with pytest.raises(InputError, match="KV cache holds 2 rows"):
        model(ids[:1, :1], past_key_values=cache)


# ----- fromzero model info -----


def test_model_info_cli_reports_counts_for_presets_and_directories(tmp_path, capsys):
    import json

    from fromzero.cli import main

    assert main(["model", "info", "mini", "--set", "vocab_size=65", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    with torch.device("meta"):
        mini = GPT(GPTConfig.preset("mini", vocab_size=65))
    assert report["parameters"]["total"] == mini.num_params()
    assert sum(report["parameters"]["components"].values()) == mini.num_params()
    assert report["weight_bytes"] == {"fp32": 4 * mini.num_params(), "bf16": 2 * mini.num_params(),
                                      "int8": mini.num_params()}
    assert report["kv_cache_bytes_per_token_fp32"] == 2 * 4 * 128 * 4

    small_model(tie_weights=False).save_pretrained(tmp_path)
    assert main(["model", "info", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "output layer (untied)" in text and "feed-forward (3 blocks)" in text


def test_model_info_cli_errors_are_one_line(capsys):
    from fromzero.cli import main

    assert main(["model", "info", "gpt5"]) == 2
    assert "presets: tiny, mini" in capsys.readouterr().err
    assert main(["model", "info", "tiny", "--set", "n_layers=3"]) == 2
    assert "unknown GPTConfig field" in capsys.readouterr().err
    assert main(["model", "info", "tiny", "--set", "n_layer"]) == 2
    capsys.readouterr()
    assert main(["model", "info", "tiny", "--set", "n_layer=0"]) == 2
    err = capsys.readouterr().err
    assert "--set: n_layer must be a positive integer" in err and "GPTConfig." not in err


def test_logits_to_keep_returns_the_last_positions_only():
    model = small_model()
    ids = torch.randint(0, 97, (2, 10))
    full = model(ids).logits
    last = model(ids, logits_to_keep=1)
    assert last.logits.shape == (2, 1, 97)
    torch.testing.assert_close(last.logits, full[:, -1:], atol=1e-6, rtol=1e-6)
    cache = model(ids[:, :6], use_cache=True, logits_to_keep=1).past_key_values
    assert cache.seq_len == 6  # the cache still holds every position
    torch.testing.assert_close(model(ids[:, 6:], past_key_values=cache, logits_to_keep=3).logits, full[:, -3:],
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match="logits_to_keep"):
        model(ids, ids, logits_to_keep=1)

"""fromzero.nn building blocks against references: formulas, torch SDPA, transformers' GPT-2 block."""

from __future__ import annotations

import math

import pytest
import torch

from fromzero.nn import (
    Block,
    FeedForward,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    causal_mask,
    activate,
    scaled_dot_product_attention,
)


def test_sinusoidal_matches_the_paper_formula():
    n_embd, positions = 16, torch.tensor([0, 1, 5, 37])
    encoding = SinusoidalPositionalEncoding(n_embd)(positions)
    for row, pos in enumerate(positions.tolist()):
        for i in range(n_embd // 2):
            angle = pos / 10000 ** (2 * i / n_embd)
            assert encoding[row, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert encoding[row, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    assert encoding.shape == (4, n_embd)
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionalEncoding(15)


def test_embeddings_are_lookup_tables():
    torch.manual_seed(0)
    tokens, positions = TokenEmbedding(10, 4), LearnedPositionalEmbedding(8, 4)
    ids = torch.tensor([[3, 7]])
    assert torch.equal(tokens(ids)[0, 1], tokens.weight[7])
    assert torch.equal(positions(torch.tensor([5])), positions.weight[5:6])


def test_causal_mask_is_lower_triangle_and_bottom_right_aligned_with_a_cache():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    # Two new queries after three cached keys: positions 3 and 4.
    assert torch.equal(
        causal_mask(2, 5), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    )


@pytest.mark.parametrize("with_mask", [False, True])
def test_explicit_attention_equals_torch_sdpa(with_mask):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    mask = causal_mask(5) if with_mask else None
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    if with_mask:
        assert (weights[..., 0, 1:] == 0).all()  # the first token sees only itself


def _attention(seed=0, n_embd=32, n_head=4):
    torch.manual_seed(seed)
    return MultiHeadAttention(n_embd, n_head).eval()


def test_multi_head_attention_fast_path_equals_explicit_path():
    attn, x = _attention(), torch.randn(3, 7, 32)
    fast, none = attn(x, is_causal=True)
    explicit, weights = attn(x, is_causal=True, need_weights=True)
    assert none is None and weights.shape == (3, 4, 7, 7)
    torch.testing.assert_close(fast, explicit, atol=1e-6, rtol=1e-5)
    mask = causal_mask(7)[None, None] & torch.tensor([[0, 0, 1, 1, 1, 1, 1]] * 3, dtype=torch.bool)[:, None, None]
    mask |= torch.eye(7, dtype=torch.bool)
    fast, _ = attn(x, mask=mask)
    explicit, _ = attn(x, mask=mask, need_weights=True)
    torch.testing.assert_close(fast, explicit, atol=1e-6, rtol=1e-5)
    assert not fast.isnan().any()


def test_activations_match_transformers(transformers):
    from transformers.activations import ACT2FN

    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(activate(x, "gelu_new"), ACT2FN["gelu_new"](x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(activate(x, "gelu"), ACT2FN["gelu"](x))
    torch.testing.assert_close(activate(x, "relu"), ACT2FN["relu"](x))  # the original Transformer's
    assert (activate(x, "gelu_new") - activate(x, "gelu")).abs().max() > 1e-4  # they really differ
    with pytest.raises(ValueError, match="unknown activation"):
        FeedForward(8, 32, activation="swish")


def _hf_block_config(transformers, activation):
    return transformers.GPT2Config(n_embd=32, n_head=4, n_layer=1, activation_function=activation,
                                   attn_implementation="eager")


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_block_equals_transformers_gpt2_block(transformers, activation):
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    torch.manual_seed(0)
    reference = GPT2Block(_hf_block_config(transformers, activation), layer_idx=0).eval()
    for param in reference.parameters():
        torch.nn.init.normal_(param, std=0.2)
    block = Block(32, 4, activation=activation).eval()
    state = {k: v.t() if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) else v
             for k, v in reference.state_dict().items()}
    block.load_state_dict(state)
    x = torch.randn(2, 6, 32)
    additive = torch.zeros(6, 6).masked_fill(~causal_mask(6), torch.finfo(torch.float32).min)
    expected = reference(x, attention_mask=additive[None, None])
    expected = expected[0] if isinstance(expected, tuple) else expected
    actual, _ = block(x, is_causal=True)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)

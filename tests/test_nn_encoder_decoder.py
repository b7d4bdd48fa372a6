"""The original Transformer's blocks (fromzero.nn.encoder_decoder, fromzero.nn.cross_attention) against
PyTorch's nn.TransformerEncoderLayer / nn.TransformerDecoderLayer with the same weights, post-LN (the
paper's) and pre-LN, with padding on both sides; and a decoder fed one token at a time through a KV
cache with the source's keys/values computed once equals the whole target in one pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fromzero.models import KVCache
from fromzero.nn import DecoderBlock, EncoderBlock, causal_mask

E, HEADS, INNER = 32, 4, 64


def copy_attention(ours, theirs) -> None:
    ours.c_attn.weight.data.copy_(theirs.in_proj_weight)  # (3E, E): queries, keys, values, in that order
    ours.c_attn.bias.data.copy_(theirs.in_proj_bias)
    ours.c_proj.weight.data.copy_(theirs.out_proj.weight)
    ours.c_proj.bias.data.copy_(theirs.out_proj.bias)


def copy_common(ours, theirs) -> None:
    ours.mlp.c_fc.load_state_dict(theirs.linear1.state_dict())
    ours.mlp.c_proj.load_state_dict(theirs.linear2.state_dict())
    ours.ln_1.load_state_dict(theirs.norm1.state_dict())
    ours.ln_2.load_state_dict(theirs.norm2.state_dict())


def source_and_padding(batch: int = 3, length: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x = torch.randn(batch, length, E)
    lengths = torch.tensor([length, length - 2, 3])[:batch]
    padding = torch.arange(length)[None, :] >= lengths[:, None]  # True at padding (PyTorch's convention)
    return x, padding


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_equals_pytorchs(norm_first, activation):
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(E, HEADS, INNER, dropout=0.0, activation=activation, batch_first=True,
                                        norm_first=norm_first).eval()
    ours = EncoderBlock(E, HEADS, n_inner=INNER, activation=activation, norm_first=norm_first).eval()
    copy_attention(ours.attn, theirs.self_attn)
    copy_common(ours, theirs)
    x, padding = source_and_padding()
    expected = theirs(x, src_key_padding_mask=padding)
    got, weights = ours(x, mask=~padding[:, None, None, :], need_weights=True)
    real = ~padding
    assert torch.allclose(got[real], expected[real], atol=1e-5)  # padded positions' outputs are never used
    assert torch.allclose(ours(x, mask=~padding[:, None, None, :])[0][real], expected[real], atol=1e-5)
    assert weights.shape == (3, HEADS, 7, 7) and torch.all(weights[2, :, :, 3:] == 0)  # no weight on padding


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_decoder_block_equals_pytorchs(norm_first):
    torch.manual_seed(0)
    theirs = nn.TransformerDecoderLayer(E, HEADS, INNER, dropout=0.0, activation="relu", batch_first=True,
                                        norm_first=norm_first).eval()
    ours = DecoderBlock(E, HEADS, n_inner=INNER, norm_first=norm_first).eval()
    copy_attention(ours.attn, theirs.self_attn)
    cross = theirs.multihead_attn
    ours.cross.c_q.weight.data.copy_(cross.in_proj_weight[:E])
    ours.cross.c_q.bias.data.copy_(cross.in_proj_bias[:E])
    ours.cross.c_kv.weight.data.copy_(cross.in_proj_weight[E:])
    ours.cross.c_kv.bias.data.copy_(cross.in_proj_bias[E:])
    ours.cross.c_proj.load_state_dict(cross.out_proj.state_dict())
    copy_common(ours, theirs)
    ours.ln_3.load_state_dict(theirs.norm3.state_dict())

    memory, padding = source_and_padding()
    target = torch.randn(3, 5, E)
    expected = theirs(target, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5),
                      tgt_is_causal=True, memory_key_padding_mask=padding)
    memory_kv = ours.cross.memory_kv(memory)
    got, self_weights, cross_weights = ours(target, memory_kv, is_causal=True, memory_mask=~padding[:, None, None, :],
                                            need_weights=True)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(ours(target, memory_kv, mask=causal_mask(5), memory_mask=~padding[:, None, None, :])[0],
                          expected, atol=1e-5)
    assert torch.all(self_weights.triu(1) == 0)  # causal: nothing from later target positions
    assert cross_weights.shape == (3, HEADS, 5, 7) and torch.all(cross_weights[2, ..., 3:] == 0)
    assert torch.allclose(cross_weights.sum(-1), torch.ones(3, HEADS, 5))


def test_decoding_one_token_at_a_time_with_a_cache_equals_one_pass():
    torch.manual_seed(0)
    blocks = [DecoderBlock(E, HEADS, n_inner=INNER, layer_idx=i).eval() for i in range(2)]
    memory, padding = source_and_padding()
    memory_mask = ~padding[:, None, None, :]
    memory_kvs = [block.cross.memory_kv(memory) for block in blocks]  # once per source
    target = torch.randn(3, 6, E)

    def run(x, **attention):
        for block, memory_kv in zip(blocks, memory_kvs):
            x, _, _ = block(x, memory_kv, memory_mask=memory_mask, **attention)
        return x

    with torch.no_grad():
        whole = run(target, is_causal=True)
        cache = KVCache(2, 3, HEADS, E // HEADS, 6)
        steps = []
        for t in range(6):
            steps.append(run(target[:, t:t + 1], cache=cache))
            cache.advance(1)
    assert torch.allclose(torch.cat(steps, dim=1), whole, atol=1e-5)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        DecoderBlock(30, 4)
    with pytest.raises(ValueError, match="unknown activation"):
        EncoderBlock(32, 4, activation="swish")

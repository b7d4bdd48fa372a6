"""The encoder–decoder Transformer (fromzero.models.seq2seq): cached decoding equals one pass, the loss is
label-smoothed cross-entropy that skips padding, padding changes nothing, the alignment is there, bad
input is refused, and it learns: a tiny model copies sequences it never saw."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fromzero.errors import InputError
from fromzero.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer

PAD, BOS, EOS = 0, 1, 2


def model(**changes) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    settings = dict(src_vocab_size=20, tgt_vocab_size=24, block_size=16, n_encoder_layer=2, n_decoder_layer=2,
                    n_head=2, n_embd=32, dropout=0.0) | changes
    return Seq2SeqTransformer(Seq2SeqConfig(**settings)).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.tensor([[5, 6, 7, 8, 9, 3], [4, 5, 6, PAD, PAD, PAD]])
    tgt = torch.tensor([[BOS, 10, 11, 12, 13], [BOS, 14, 15, PAD, PAD]])
    return src, tgt


@pytest.mark.parametrize("settings", [{}, dict(norm_first=False), dict(pos_encoding="learned"),
                                      dict(share_embeddings=True, tgt_vocab_size=20)],
                         ids=["pre-LN", "post-LN", "learned positions", "shared embeddings"])
def test_decoding_token_by_token_with_a_cache_equals_one_pass(settings):
    net = model(**settings)
    src, tgt = batch()
    with torch.no_grad():
        whole = net(src, tgt).logits
        memory_kv, memory_mask = net.memory_kv(net.encode(src)), net.source_mask(src)
        cache = net.new_cache(2)
        steps = [net.decode(tgt[:, :2], memory_kv, memory_mask, cache=cache).logits]  # two at once, then one by one
        steps += [net.decode(tgt[:, t:t + 1], memory_kv, memory_mask, cache=cache).logits for t in range(2, 5)]
    assert torch.allclose(torch.cat(steps, dim=1), whole, atol=1e-5)


def test_source_padding_changes_nothing_and_gets_no_attention():
    net = model()
    src, tgt = batch()
    with torch.no_grad():
        padded = net(src, tgt, need_weights=True)
        alone = net(src[1:, :3], tgt[1:])
    assert torch.allclose(padded.logits[1], alone.logits[0], atol=1e-5)
    assert len(padded.cross_attentions) == 2 and padded.cross_attentions[0].shape == (2, 2, 5, 6)
    assert torch.all(padded.cross_attentions[-1][1, ..., 3:] == 0)
    # every head of every self-attention too: the encoder's ignore padding, the decoder's look only left
    assert [w.shape for w in padded.encoder_attentions] == [(2, 2, 6, 6)] * 2
    assert torch.all(padded.encoder_attentions[0][1, ..., 3:] == 0)
    assert [w.shape for w in padded.decoder_attentions] == [(2, 2, 5, 5)] * 2
    assert torch.all(padded.decoder_attentions[1].triu(1) == 0)
    for weights in (*padded.encoder_attentions, *padded.decoder_attentions, *padded.cross_attentions):
        assert torch.allclose(weights[0].sum(-1), torch.ones(2, weights.size(2)))


def test_loss_is_label_smoothed_cross_entropy_without_the_padding():
    net = model(label_smoothing=0.1)
    src, tgt = batch()
    targets = torch.tensor([[10, 11, 12, 13, EOS], [14, 15, EOS, PAD, PAD]])
    out = net(src, tgt, targets)
    logits, real = out.logits.flatten(0, 1), targets.flatten() != PAD
    log_p = F.log_softmax(logits[real], dim=-1)
    by_hand = (0.9 * -log_p.gather(1, targets.flatten()[real, None])[:, 0] + 0.1 * -log_p.mean(-1)).mean()
    assert torch.allclose(out.loss, by_hand, atol=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="one vocabulary"):
        model(share_embeddings=True)
    with pytest.raises(InputError, match="divisible"):
        model(n_head=3)
    with pytest.raises(InputError, match="pos_encoding"):
        model(pos_encoding="rotary")
    net = model()
    src, tgt = batch()
    with pytest.raises(InputError, match="block_size"):
        net(torch.ones(1, 17, dtype=torch.long), tgt[:1])
    with pytest.raises(InputError, match="one batch size"):
        net(src, tgt[:1])


def test_a_tiny_model_learns_to_copy_sequences_it_never_saw():
    torch.manual_seed(0)
    net = model(src_vocab_size=13, tgt_vocab_size=13, share_embeddings=True, label_smoothing=0.0).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)

    def sequences(n: int) -> torch.Tensor:
        return torch.randint(3, 13, (n, 6), generator=generator)

    held_out = sequences(64)
    for _ in range(300):
        src = sequences(32)
        tgt_in = torch.cat([torch.full((32, 1), BOS), src], dim=1)
        targets = torch.cat([src, torch.full((32, 1), EOS)], dim=1)
        loss = net(src, tgt_in, targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():  # greedy, one token at a time through the cache
        memory_kv, memory_mask = net.memory_kv(net.encode(held_out)), net.source_mask(held_out)
        cache, token, written = net.new_cache(64), torch.full((64, 1), BOS), []
        for _ in range(6):
            token = net.decode(token, memory_kv, memory_mask, cache=cache).logits[:, -1].argmax(-1, keepdim=True)
            written.append(token)
    exact = (torch.cat(written, dim=1) == held_out).all(dim=1).float().mean()
    assert exact >= 0.9, f"only {exact:.0%} of unseen sequences copied exactly"

"""The GRU encoder–decoder (fromzero.models.gru_seq2seq): step-by-step decoding equals teacher forcing,
beam-style row selection is exact, source padding changes nothing, the loss is label-smoothed
cross-entropy without the padding, attention weights are a distribution over the real source, bad
input is refused, and it learns: with attention a tiny model copies sequences it never saw."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from fromzero.errors import InputError
from fromzero.models.gru_seq2seq import GRUSeq2Seq, GRUSeq2SeqConfig

PAD, BOS, EOS = 0, 1, 2
ATTENTION = pytest.mark.parametrize("attention", [True, False], ids=["attention", "bottleneck"])


def model(**changes) -> GRUSeq2Seq:
    torch.manual_seed(0)
    settings = {"src_vocab_size": 20, "tgt_vocab_size": 24, "block_size": 16, "n_embd": 16, "n_hidden": 24,
                "n_layer": 2, "dropout": 0.0} | changes
    return GRUSeq2Seq(GRUSeq2SeqConfig(**settings)).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.tensor([[5, 6, 7, 8, 9, 3], [4, 5, 6, PAD, PAD, PAD], [7, PAD, PAD, PAD, PAD, PAD]])
    tgt = torch.tensor([[BOS, 10, 11, 12, 13], [BOS, 14, 15, PAD, PAD], [BOS, 16, 17, 18, PAD]])
    return src, tgt


def step_through(net: GRUSeq2Seq, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    decoding = net.start_decoding(src, tgt.size(1))
    return torch.stack([decoding.step(tgt[:, t]) for t in range(tgt.size(1))], dim=1)


@ATTENTION
def test_decoding_step_by_step_equals_teacher_forcing(attention):
    net = model(attention=attention)
    src, tgt = batch()
    with torch.no_grad():
        whole = net(src, tgt).logits
        steps = step_through(net, src, tgt)
    assert steps.shape == whole.shape == (3, 5, 24) and steps.dtype == torch.float32
    assert torch.allclose(steps, whole, atol=1e-5)


@ATTENTION
def test_select_repeats_and_reorders_rows_as_beam_search_does(attention):
    net = model(attention=attention)
    src, tgt = batch()
    rows = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        decoding = net.start_decoding(src, 5)
        first = decoding.step(tgt[:, 0])
        decoding.select(rows)
        rest = [decoding.step(tgt[rows, t]) for t in range(1, 5)]
        separately = step_through(net, src[rows], tgt[rows])
    assert torch.allclose(torch.stack([first[rows], *rest], dim=1), separately, atol=1e-5)


@ATTENTION
def test_source_padding_changes_nothing(attention):
    net = model(attention=attention)
    src, tgt = batch()
    more_padding = F.pad(src, (0, 4), value=PAD)
    with torch.no_grad():
        padded = net(more_padding, tgt).logits
        plain = net(src, tgt).logits
        alone = net(src[1:2, :3], tgt[1:2]).logits
    assert torch.allclose(padded, plain, atol=1e-5)
    assert torch.allclose(plain[1], alone[0], atol=1e-5)


def test_loss_is_label_smoothed_cross_entropy_without_the_padding():
    net = model(label_smoothing=0.1)
    src, tgt = batch()
    targets = torch.tensor([[10, 11, 12, 13, EOS], [14, 15, EOS, PAD, PAD], [16, 17, 18, EOS, PAD]])
    out = net(src, tgt, targets)
    logits, real = out.logits.flatten(0, 1), targets.flatten() != PAD
    log_p = F.log_softmax(logits[real], dim=-1)
    by_hand = (0.9 * -log_p.gather(1, targets.flatten()[real, None])[:, 0] + 0.1 * -log_p.mean(-1)).mean()
    assert torch.allclose(out.loss, by_hand, atol=1e-6)
    assert net(src, tgt).loss is None


def test_attention_weights_are_a_distribution_over_the_real_source():
    net = model()
    src, tgt = batch()
    with torch.no_grad():
        out = net(src, tgt, need_weights=True)
    assert len(out.cross_attentions) == 1
    weights = out.cross_attentions[0]
    assert weights.shape == (3, 1, 5, 6)
    real = net.source_mask(src)[:, None, None, :]
    assert torch.all(weights[~real.expand_as(weights)] == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 1, 5), atol=1e-6)
    assert net(src, tgt).cross_attentions is None
    assert model(attention=False)(src, tgt, need_weights=True).cross_attentions is None


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="one vocabulary"):
        model(share_embeddings=True)
    with pytest.raises(InputError, match="label_smoothing"):
        model(label_smoothing=1.0)
    with pytest.raises(InputError, match="n_hidden"):
        model(n_hidden=0)
    net = model()
    src, tgt = batch()
    with pytest.raises(InputError, match="one batch size"):
        net(src, tgt[:1])
    with pytest.raises(InputError, match="targets must have the shape"):
        net(src, tgt, tgt[:, 1:])
    with pytest.raises(InputError, match="source of 17 tokens.*block_size"):
        net(torch.ones(1, 17, dtype=torch.long), tgt[:1])
    with pytest.raises(InputError, match="target of 17 tokens.*block_size"):
        net(src[:1], torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(InputError, match="block_size"):
        net.start_decoding(src, 17)
    with pytest.raises(InputError, match="at least one real token"):
        net(torch.zeros(1, 3, dtype=torch.long), tgt[:1])
    with pytest.raises(InputError, match="padded on the right"):
        net(torch.tensor([[PAD, 5, 6]]), tgt[:1])


def copy_task(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random sequences of 3 to 8 tokens from 3..11 (0, 1, 2 are pad, BOS, EOS): source, BOS + copy, copy + EOS."""
    lengths = torch.randint(3, 9, (n,), generator=generator)
    src = torch.randint(3, 12, (n, 8), generator=generator).masked_fill(torch.arange(8) >= lengths[:, None], PAD)
    tgt_in = torch.cat([torch.full((n, 1), BOS), src], dim=1)
    targets = torch.cat([src, torch.full((n, 1), PAD)], dim=1)
    targets[torch.arange(n), lengths] = EOS
    return src, tgt_in, targets


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Ops this small gain nothing from a second thread, and lose much when another program takes its core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@one_thread()
def train_to_copy(attention: bool, steps: int = 300) -> tuple[GRUSeq2Seq, list[float], torch.Generator]:
    torch.manual_seed(0)
    net = GRUSeq2Seq(GRUSeq2SeqConfig(12, 12, block_size=16, n_embd=32, n_hidden=64, attention=attention,
                                      dropout=0.0, share_embeddings=True, label_smoothing=0.0)).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)  # the last steps polish
    generator, losses = torch.Generator().manual_seed(0), []
    for _ in range(steps):
        loss = net(*copy_task(64, generator)).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)  # recurrent nets' gradients spike now and then
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return net.eval(), losses, generator


def test_with_attention_a_tiny_model_copies_sequences_it_never_saw():
    net, _, generator = train_to_copy(attention=True)
    src, _, targets = copy_task(200, generator)
    with torch.no_grad():  # greedy, one token at a time, until every row has written EOS
        decoding, token, written = net.start_decoding(src, 10), torch.full((200,), BOS), []
        for _ in range(9):
            token = decoding.step(token).argmax(-1)
            written.append(token)
            if bool((torch.stack(written, dim=1) == EOS).any(dim=1).all()):
                break
    written = torch.stack(written, dim=1)
    written = F.pad(written, (0, 9 - written.size(1)), value=PAD)
    real = targets != PAD
    exact = ((written == targets) | ~real).all(dim=1).float().mean()
    assert exact >= 0.9, f"only {exact:.0%} of unseen sequences copied exactly"


def test_without_attention_the_bottleneck_model_still_learns():
    net, losses, generator = train_to_copy(attention=False)
    src, tgt_in, targets = copy_task(200, generator)
    with torch.no_grad():
        logits = net(src, tgt_in).logits
    real = targets != PAD
    accuracy = (logits.argmax(-1) == targets)[real].float().mean()
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20
    assert accuracy > 0.7, f"only {accuracy:.0%} of next tokens right under teacher forcing"

"""Decoding an encoder–decoder through fromzero.generation (generate_from_source): greedy equals the step
by step argmax of whole forward passes, beam search over the cached decoding equals beam search over a
decoding that recomputes everything, for the Transformer and the GRU; sampling is seeded; bad input is
refused."""

from __future__ import annotations

import pytest
import torch

from fromzero.errors import InputError
from fromzero.generation import GenerationConfig
from fromzero.generation.seq2seq import generate_from_source
from fromzero.models.gru_seq2seq import GRUSeq2Seq, GRUSeq2SeqConfig
from fromzero.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer

PAD, BOS, EOS, VOCAB = 0, 1, 2, 12


def transformer() -> Seq2SeqTransformer:
    torch.manual_seed(0)
    return Seq2SeqTransformer(Seq2SeqConfig(VOCAB, VOCAB, block_size=12, n_encoder_layer=2, n_decoder_layer=2,
                                            n_head=2, n_embd=32, dropout=0.0, pad_id=PAD)).eval()


def gru() -> GRUSeq2Seq:
    torch.manual_seed(0)
    return GRUSeq2Seq(GRUSeq2SeqConfig(VOCAB, VOCAB, block_size=12, n_embd=16, n_hidden=24, dropout=0.0,
                                       pad_id=PAD)).eval()


SOURCES = torch.tensor([[5, 6, 7, 8, 9], [4, 3, 10, PAD, PAD], [11, 7, PAD, PAD, PAD]])


class Recomputing:
    """A reference decoding with no cache: every step runs the whole target so far through ``forward``."""

    def __init__(self, model, src: torch.Tensor):
        self.model, self.src = model, src
        self.target = src.new_empty((src.size(0), 0))

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.target = torch.cat([self.target, tokens.view(-1, 1)], dim=1)
        return self.model(self.src, self.target).logits[:, -1].float()

    def select(self, rows: torch.Tensor) -> None:
        self.src, self.target = self.src[rows], self.target[rows]


class WithoutCache(torch.nn.Module):
    """The same model, decoded through :class:`Recomputing`."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.config = model, model.config

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)

    def start_decoding(self, src: torch.Tensor, max_len: int) -> Recomputing:
        return Recomputing(self.inner, src)


def config(**changes) -> GenerationConfig:
    return GenerationConfig(**{"max_new_tokens": 8, "eos_token_id": EOS, "pad_token_id": PAD, **changes})


@pytest.mark.parametrize("make", [transformer, gru], ids=["transformer", "gru"])
def test_greedy_is_the_argmax_of_whole_forward_passes(make):
    net = make()
    out = generate_from_source(net, SOURCES, config(eos_token_id=None), bos_id=BOS)
    target = torch.full((3, 1), BOS)
    with torch.no_grad():
        for _ in range(8):
            target = torch.cat([target, net(SOURCES, target).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, target)


@pytest.mark.parametrize("make", [transformer, gru], ids=["transformer", "gru"])
@pytest.mark.parametrize("settings", [dict(num_beams=3), dict(num_beams=4, num_return_sequences=2, length_penalty=0.6),
                                      dict(num_beams=3, early_stopping=True)])
def test_beam_search_over_the_cache_equals_beam_search_recomputing_everything(make, settings):
    net = make()
    cached = generate_from_source(net, SOURCES, config(**settings), bos_id=BOS)
    reference = generate_from_source(WithoutCache(net), SOURCES, config(**settings), bos_id=BOS)
    assert torch.equal(cached, reference)
    assert cached.size(0) == 3 * settings.get("num_return_sequences", 1) and torch.all(cached[:, 0] == BOS)


def test_sampling_is_seeded_and_gives_the_sequences_asked_for():
    net = transformer()
    settings = config(do_sample=True, top_k=0, seed=7, num_return_sequences=3)
    first = generate_from_source(net, SOURCES, settings, bos_id=BOS)
    assert first.shape[0] == 9 and torch.equal(first, generate_from_source(net, SOURCES, settings, bos_id=BOS))
    reference = generate_from_source(WithoutCache(net), SOURCES, settings, bos_id=BOS)
    assert torch.equal(first, reference)


def test_bad_input_is_refused():
    net = transformer()
    with pytest.raises(InputError, match="longest target"):
        generate_from_source(net, SOURCES, config(max_new_tokens=12), bos_id=BOS)
    with pytest.raises(InputError, match="batch, length"):
        generate_from_source(net, SOURCES[0], config(), bos_id=BOS)
    with pytest.raises(InputError, match="num_beams"):
        generate_from_source(net, SOURCES, config(num_beams=0), bos_id=BOS)

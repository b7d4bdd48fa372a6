"""Logits processors and GenerationConfig: equal to transformers' processors on random inputs."""

from __future__ import annotations

import pytest
import torch

from fromzero.errors import InputError
from fromzero.generation import GenerationConfig, build_processors
from fromzero.generation import processors as ours
from fromzero.generation.processors import apply_processors

VOCAB = 1000


@pytest.fixture(scope="module")
def hf(transformers):
    """transformers' logits processors, the reference."""
    from transformers.generation import logits_process

    return logits_process


@pytest.fixture
def batch():
    """Random token histories (with repeats) and peaked random scores, 6 rows."""
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 60, (6, 40), generator=gen)  # small id range: many repeats
    scores = torch.randn(6, VOCAB, generator=gen) * 3
    scores[:, :60] += torch.randn(6, 60, generator=gen) * 2  # some negative, some positive
    return input_ids, scores


@pytest.mark.parametrize("value", [0.3, 0.7, 1.5])
def test_temperature_equals_hf(hf, batch, value):
    ids, scores = batch
    expected = hf.TemperatureLogitsWarper(value)(ids, scores.clone())
    assert torch.equal(ours.temperature(ids, scores, value), expected)


@pytest.mark.parametrize("k,min_keep", [(1, 1), (5, 1), (50, 1), (1, 2), (VOCAB + 5, 1)])
def test_top_k_equals_hf(hf, batch, k, min_keep):
    ids, scores = batch
    expected = hf.TopKLogitsWarper(k, min_tokens_to_keep=min_keep)(ids, scores.clone())
    got = ours.top_k(ids, scores, k, min_keep)
    assert torch.equal(got, expected)
    assert int(torch.isfinite(got[0]).sum()) == min(max(k, min_keep), VOCAB)


@pytest.mark.parametrize("p,min_keep", [(0.05, 1), (0.5, 1), (0.9, 1), (1.0, 1), (0.01, 3)])
def test_top_p_equals_hf(hf, batch, p, min_keep):
    ids, scores = batch
    expected = hf.TopPLogitsWarper(p, min_tokens_to_keep=min_keep)(ids, scores.clone())
    got = ours.top_p(ids, scores, p, min_keep)
    assert torch.equal(got, expected)
    kept = torch.isfinite(got)
    assert (kept.sum(-1) >= min_keep).all()
    assert (torch.where(kept, scores.softmax(-1), 0).sum(-1) >= p - 1e-6).all()


@pytest.mark.parametrize("p,min_keep", [(0.0, 1), (0.05, 1), (0.3, 1), (1.0, 1), (0.9, 4)])
def test_min_p_equals_hf(hf, batch, p, min_keep):
    ids, scores = batch
    expected = hf.MinPLogitsWarper(p, min_tokens_to_keep=min_keep)(ids, scores.clone())
    assert torch.equal(ours.min_p(ids, scores, p, min_keep), expected)


@pytest.mark.parametrize("penalty", [0.7, 1.3, 2.0])
def test_repetition_penalty_equals_hf(hf, batch, penalty):
    ids, scores = batch
    expected = hf.RepetitionPenaltyLogitsProcessor(penalty)(ids, scores.clone())
    got = ours.repetition_penalty(ids, scores, penalty)
    assert torch.equal(got, expected)
    seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, ids, True)
    assert torch.equal(got[~seen], scores[~seen])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram_equals_hf(hf, n):
    gen = torch.Generator().manual_seed(n)
    ids = torch.randint(0, 4, (5, 30), generator=gen)  # 4 symbols: n-grams repeat a lot
    scores = torch.randn(5, 50, generator=gen)
    expected = hf.NoRepeatNGramLogitsProcessor(n)(ids, scores.clone())
    got = ours.no_repeat_ngram(ids, scores, n)
    assert torch.equal(got, expected)
    assert torch.isinf(got).any()


def test_no_repeat_ngram_bans_exactly_the_completing_tokens():
    ids = torch.tensor([[5, 6, 7, 5, 6]])  # "5 6" was followed by 7 once: 7 is banned now
    got = ours.no_repeat_ngram(ids, torch.zeros(1, 10), 3)
    assert torch.isinf(got[0]).nonzero().flatten().tolist() == [7]
    assert torch.equal(ours.no_repeat_ngram(ids[:, :2], torch.zeros(1, 10), 3), torch.zeros(1, 10))


def test_build_processors_chain_equals_hf_chain(hf, batch):
    ids, scores = batch
    config = GenerationConfig(do_sample=True, temperature=0.8, top_k=40, top_p=0.9, min_p=0.02,
                              repetition_penalty=1.2, no_repeat_ngram_size=2)
    chain = hf.LogitsProcessorList([
        hf.RepetitionPenaltyLogitsProcessor(1.2), hf.NoRepeatNGramLogitsProcessor(2),
        hf.TemperatureLogitsWarper(0.8), hf.TopKLogitsWarper(40), hf.TopPLogitsWarper(0.9),
        hf.MinPLogitsWarper(0.02),
    ])
    expected = chain(ids, scores.clone())
    assert torch.equal(apply_processors(build_processors(config), ids, scores), expected)


def test_warpers_only_apply_when_sampling():
    assert build_processors(GenerationConfig(temperature=0.5, top_k=3, top_p=0.5)) == []
    assert len(build_processors(GenerationConfig(do_sample=True, temperature=0.0, top_k=3))) == 0
    assert len(build_processors(GenerationConfig(repetition_penalty=1.1))) == 1


def test_defaults_match_transformers(transformers):
    ours_default = GenerationConfig()
    defaults = getattr(transformers.GenerationConfig, "_get_default_generation_params", None)
    theirs = defaults() if defaults else vars(transformers.GenerationConfig())  # v5 / v4
    for name in ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "num_beams",
                 "length_penalty", "early_stopping", "num_return_sequences", "no_repeat_ngram_size"):
        assert getattr(ours_default, name) == theirs[name], name


@pytest.mark.parametrize("kwargs,message", [
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(temperature=-0.1), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(min_p=1.2), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    # so small that float32 scores divided by them overflow to inf (found by the server's fuzz test)
    (dict(repetition_penalty=1e-273), "repetition_penalty"),
    (dict(temperature=1e-300, do_sample=True), "temperature"),
    (dict(no_repeat_ngram_size=-2), "no_repeat_ngram_size"),
    (dict(num_beams=0), "num_beams"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "greedy"),
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(stop_strings=[""]), "stop_strings"),
    (dict(eos_token_id=[1, -3]), "eos_token_id"),
    (dict(seed=1.5), "seed"),
])
def test_invalid_settings_raise_input_error(kwargs, message):
    with pytest.raises(InputError, match=message):
        GenerationConfig(**kwargs).validate()


def test_valid_combinations_pass():
    GenerationConfig(do_sample=True, num_return_sequences=4).validate()
    GenerationConfig(num_beams=4, num_return_sequences=4, early_stopping="never").validate()
    GenerationConfig(do_sample=True, temperature=0.0).validate()
    assert not GenerationConfig(do_sample=True, temperature=0.0).samples

"""Language-model scores: the sliding window against the transformers perplexity recipe, and bits per byte
against the sum computed independently, for GPTs, n-grams and the char-MLP alike."""

from __future__ import annotations

import math

import pytest
import torch

from fromzero.errors import InputError
from fromzero.evaluate.perplexity import sliding_windows, text_loss, token_nll
from fromzero.evaluate.scorers import load_scorer
from fromzero.models import GPT
from fromzero.tokenizers.char import CharTokenizer

TEXT = ("Les élèves lisent. पानी गरम है. The cat sat on the mat, and the dog sat on the log. " * 6).strip()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, transformers):
    """A random GPT-2-shaped model saved by transformers, with a character tokenizer beside it."""
    folder = tmp_path_factory.mktemp("hf")
    tokenizer = CharTokenizer.train(TEXT)
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=tokenizer.vocab_size)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save(folder)
    return folder


def transformers_recipe(model, ids: torch.Tensor, max_length: int, stride: int) -> float:
    """The perplexity guide's loop (huggingface.co/docs/transformers/perplexity), one window at a time.

    Each window's loss is weighted by the tokens it actually scores (the labels left after the
    shift), which is what the guide means by its per-window token count.
    """
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, ids.numel(), stride):
        end = min(begin + max_length, ids.numel())
        trg_len = end - prev_end
        input_ids = ids[begin:end].unsqueeze(0)
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        scored = int((target_ids[:, 1:] != -100).sum())
        nll_sum += float(loss) * scored
        n_tokens += scored
        prev_end = end
        if end == ids.numel():
            break
    return math.exp(nll_sum / n_tokens)


@pytest.mark.parametrize("stride", [16, 32, 63])
def test_sliding_window_perplexity_equals_the_transformers_recipe(hf_folder, transformers, stride):
    reference = transformers.GPT2LMHeadModel.from_pretrained(hf_folder).eval()
    ids = torch.randint(0, reference.config.vocab_size, (300,), generator=torch.Generator().manual_seed(stride))
    expected = transformers_recipe(reference, ids, 64, stride)
    ours = GPT.from_pretrained(hf_folder)
    for batch_size in (1, 3):
        nll, count = token_nll(ours, ids, stride=stride, batch_size=batch_size)
        assert count == ids.numel() - 1  # every token after the first, once
        assert math.exp(nll / count) == pytest.approx(expected, rel=1e-4)


def test_windows_score_every_token_once_with_the_most_context_the_stride_allows():
    for n, block, stride in [(10, 4, 2), (10, 4, 3), (2, 4, 1), (100, 16, 15), (17, 16, 8)]:
        windows = sliding_windows(n, block, stride)
        scored = [t for w in windows for t in range(w.first, w.end)]
        assert scored == list(range(1, n))
        assert all(w.end - w.begin <= block and w.begin < w.first for w in windows)
        assert all(w.first - w.begin >= min(block - stride, w.first) for w in windows[1:])
    for stride in (0, 4):
        with pytest.raises(InputError, match="stride must be between 1 and 3"):
            sliding_windows(10, 4, stride)


def test_text_loss_with_disjoint_windows_is_the_models_own_loss(hf_folder):
    model = GPT.from_pretrained(hf_folder)
    ids = torch.randint(0, model.config.vocab_size, (64 * 2 - 1,), generator=torch.Generator().manual_seed(1))
    # stride 63: two windows of 64 that overlap by one token, so together they predict ids[1:] once
    first, second = ids[:64], ids[63:]
    with torch.no_grad():
        expected = (float(model(first[None, :-1], targets=first[None, 1:]).loss) * 63
                    + float(model(second[None, :-1], targets=second[None, 1:]).loss) * 63) / 126
    assert text_loss(model, ids, stride=63) == pytest.approx(expected, rel=1e-5)


def test_bits_per_byte_is_the_total_loss_over_the_bytes(hf_folder, transformers):
    reference = transformers.GPT2LMHeadModel.from_pretrained(hf_folder).eval()
    scorer = load_scorer(str(hf_folder))
    text = TEXT[:60]  # fits the context: one pass of the reference scores it all
    ids = torch.tensor(scorer.tuned.tokenizer.encode(text))
    with torch.no_grad():
        logp = torch.log_softmax(reference(ids[None]).logits[0, :-1].double(), -1)
    nll = -float(logp.gather(1, ids[1:, None]).sum())
    score = scorer.score(text)
    scored_text = text[1:]  # a character tokenizer has no end-of-text token: the first is only context
    assert len(scored_text.encode()) > len(scored_text)  # the accents and Devanagari take several bytes
    assert score.tokens == len(text) - 1 and score.chars == len(scored_text)
    assert score.bits_per_byte == pytest.approx(nll / (len(scored_text.encode("utf-8")) * math.log(2)), rel=1e-5)
    assert score.bits_per_char == pytest.approx(nll / (len(scored_text) * math.log(2)), rel=1e-5)
    assert score.perplexity == pytest.approx(math.exp(nll / len(scored_text)), rel=1e-5)
    capped = scorer.score(TEXT, max_tokens=20)
    assert capped.tokens == 20 and capped.chars == 20
    with pytest.raises(InputError, match="--max-tokens must be at least 1"):
        scorer.score(TEXT, max_tokens=0)
    with pytest.raises(InputError, match="too short"):
        scorer.score("L")


def test_a_gpt_with_an_end_of_text_token_scores_every_token_of_the_text(hf_folder, tmp_path):
    from fromzero.tokenizers.bpe import BPETokenizer

    tokenizer = BPETokenizer.train(TEXT * 2, vocab_size=300, special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    from fromzero.models import GPTConfig

    GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=32)).save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    scorer = load_scorer(str(tmp_path))
    score = scorer.score(TEXT)
    assert score.tokens == len(tokenizer.encode(TEXT)) and score.bytes == len(TEXT.encode("utf-8"))
    model = scorer.tuned.model
    ids = [tokenizer.special_tokens["<|endoftext|>"], *tokenizer.encode(TEXT)]
    nll, _ = token_nll(model, ids)
    assert score.nll == pytest.approx(nll)


def test_ngram_and_char_mlp_runs_report_the_same_measures(tmp_path):
    from fromzero.classic.char_mlp import CharMLP, CharMLPConfig
    from fromzero.classic.ngram import NGramModel
    from fromzero.files import write_json

    ngram_dir = tmp_path / "ngram"
    ngram_dir.mkdir()
    model = NGramModel(3, "kneser-ney").fit(TEXT)
    model.save(ngram_dir / "ngram.json")
    write_json(ngram_dir / "run.json", {"tokenizer": None})
    score = load_scorer(str(ngram_dir)).score(TEXT)
    evaluation = model.evaluate(TEXT)
    assert score.tokens == len(TEXT) and score.loss == pytest.approx(evaluation.cross_entropy)
    assert score.bits_per_byte == pytest.approx(evaluation.cross_entropy * len(TEXT) / (len(TEXT.encode()) * math.log(2)))

    mlp_dir = tmp_path / "mlp"
    mlp_dir.mkdir()
    vocab = sorted(set(TEXT))
    mlp = CharMLP(CharMLPConfig(len(vocab), 3, 4, 8, "tanh"), seed=0)
    mlp.save(mlp_dir)
    write_json(mlp_dir / "vocab.json", vocab)
    score = load_scorer(str(mlp_dir)).score(TEXT)
    ids = [vocab.index(ch) for ch in TEXT]
    assert score.tokens == len(TEXT) and score.loss == pytest.approx(mlp.loss(ids))
    assert score.bits_per_char == pytest.approx(mlp.loss(ids) / math.log(2))


def test_bf16_autocast_scores_close_to_float32(hf_folder):
    exact = load_scorer(str(hf_folder)).score(TEXT)
    fast = load_scorer(str(hf_folder), dtype="bfloat16").score(TEXT)
    assert fast.tokens == exact.tokens and fast.loss != exact.loss
    assert fast.loss == pytest.approx(exact.loss, rel=2e-2)

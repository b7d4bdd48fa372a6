"""fromzero.evaluate.qa and .preferences: answer loss, greedy answers (batched as one by one) and preference
accuracy, checked by hand."""

from __future__ import annotations

import pytest
import torch

from fromzero.evaluate.preferences import preference_score
from fromzero.evaluate.qa import answer_loss, answers, generate_answers
from fromzero.finetune.batches import build_sft_data, collate, encode_prompt
from fromzero.finetune.instructions import Example, Message, PreferencePair
from fromzero.finetune.losses import sft_loss, sequence_logprobs
from fromzero.finetune.templates import TEMPLATES
from fromzero.generation import GenerationConfig, generate
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import BPETokenizer

TEXT = "What is the sun? The sun is a star. Why is the sky blue? Light scatters in the air. " * 30
QA = TEMPLATES["qa"]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tokenizer = BPETokenizer.train(TEXT, 300)
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=300, block_size=64)).eval(), tokenizer


def qa(question: str, answer: str) -> Example:
    return Example((Message("user", question), Message("assistant", answer)))


EXAMPLES = [qa("What is the sun?", "A star."), qa("Why is the sky blue?", "Light scatters in the air, mostly blue."),
            qa("What is a star?", "The sun is a star."), qa("Is the sky blue?", "Yes.")]


def test_answer_loss_weighs_every_answer_token_the_same_in_any_batching(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    batch = collate(build_sft_data(EXAMPLES, QA, tokenizer, 64).examples)
    with torch.no_grad():
        whole = float(sft_loss(model(batch["input_ids"]).logits, batch["labels"]))
    assert answer_loss(model, tokenizer, QA, EXAMPLES, batch_size=3) == pytest.approx(whole, rel=1e-5)
    assert answer_loss(model, tokenizer, QA, EXAMPLES, batch_size=1) == pytest.approx(whole, rel=1e-5)


def test_preference_score_compares_the_models_own_likelihoods(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    pairs = [PreferencePair("What is the sun?", "A star.", "The sun is a star that gives us light."),
             PreferencePair("Why is the sky blue?", "Light scatters.", "No idea."),
             PreferencePair("Is the sky blue?", "Yes.", "Yes.!")]
    score = preference_score(model, tokenizer, QA, pairs, batch_size=2)
    raw, mean = [], []
    for pair in pairs:
        rows = build_sft_data([qa(pair.prompt, pair.chosen), qa(pair.prompt, pair.rejected)], QA, tokenizer, 64).examples
        batch = collate(rows)
        with torch.no_grad():
            logps = sequence_logprobs(model(batch["input_ids"]).logits, batch["labels"])
        lengths = torch.tensor([sum(label != -100 for label in row.labels[1:]) for row in rows])
        raw.append(bool(logps[0] > logps[1]))
        mean.append(bool(logps[0] / lengths[0] > logps[1] / lengths[1]))
    assert score.pairs == 3
    assert score.accuracy == pytest.approx(sum(raw) / 3) and score.accuracy_per_token == pytest.approx(sum(mean) / 3)


def test_answers_are_greedy_and_asked_in_the_template(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    reply = answers(model, tokenizer, QA, ["What is the sun?"], max_new_tokens=12)[0]
    ids = encode_prompt(tokenizer, QA, Example((Message("user", "What is the sun?"),)))
    settings = GenerationConfig(max_new_tokens=12, eos_token_id=tokenizer.eot_id, stop_strings=["\n### Question:"])
    new = generate(model, torch.tensor([ids]), settings, tokenizer=tokenizer)[0, len(ids):].tolist()
    until_end = new[:new.index(tokenizer.eot_id)] if tokenizer.eot_id in new else new
    assert reply == tokenizer.decode(until_end).split("\n### Question:")[0].strip()


def test_batched_answers_equal_answers_one_by_one_and_say_whether_they_stopped(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    questions = ["What is the sun?", "Why is the sky blue? Tell me why.", "Is it?", "What is a star? The sun is."]
    batched = generate_answers(model, tokenizer, QA, questions, max_new_tokens=10, batch_size=3)
    alone = [generate_answers(model, tokenizer, QA, [q], max_new_tokens=10, batch_size=1)[0] for q in questions]
    assert batched == alone
    for question, answer in zip(questions, alone):
        ids = encode_prompt(tokenizer, QA, Example((Message("user", question),)))
        settings = GenerationConfig(max_new_tokens=10, eos_token_id=tokenizer.eot_id, stop_strings=["\n### Question:"])
        new = generate(model, torch.tensor([ids]), settings, tokenizer=tokenizer)[0, len(ids):].tolist()
        ended = tokenizer.eot_id in new or "\n### Question:" in tokenizer.decode(new)
        assert answer.stopped == ended

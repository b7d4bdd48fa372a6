"""Held-out questions answered for real: the model writes an answer, and we score it against the reference.

Every question of the test file is asked on its own, in the model's template, and answered with
one fixed greedy setting (so two runs, or two models, are scored on the same footing). The answer
is scored by :mod:`fromzero.evaluate.answer_metrics` (exact match, token F1, ROUGE-L, keyword
recall) and by whether it **stops properly**: ends with the end-of-text token or a stop string of
the template within ``max_new_tokens``, instead of running on until it is cut. A tiny model's
answers will rarely match, so the teacher-forced **answer loss**
(:func:`answer_loss`) is reported beside them: it moves long before
the answers read well.

Only the test file is read. The keywords of each reference answer come from its record's
``keywords`` field (the bundled ``education_qa`` test split stores them) or, when a file has none,
are derived from the reference answer by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fromzero.errors import InputError
from fromzero.evaluate.answer_metrics import derive_keywords, mean_scores, score_answer
from fromzero.finetune.batches import build_sft_data, collate, encode_prompt
from fromzero.finetune.losses import answer_lengths, sft_model_loss
from fromzero.finetune.instructions import Example, Message, instruction_records, load_instructions
from fromzero.finetune.templates import Template
from fromzero.finetune.tuned import eos_ids, stop_strings
from fromzero.generation import GenerationConfig, generate
from fromzero.generation.stopping import finished_text, stop_index
from fromzero.models import GPT
from fromzero.tokenizers import Tokenizer

TEST_DATA = "education_qa/test"
MAX_NEW_TOKENS = 80


@dataclass(frozen=True)
class QAItem:
    """A held-out question with its reference answer and the keywords a right answer mentions."""

    example: Example  # the question as a conversation (its last turn is the reference answer)
    keywords: tuple[str, ...]

    @property
    def question(self) -> str:
        return self.example.turns[-2].content

    @property
    def reference(self) -> str:
        return self.example.turns[-1].content


def load_qa(source: str = TEST_DATA) -> list[QAItem]:
    """The questions of an instruction file (by default the ``education_qa`` test split, never its train part)."""
    examples = load_instructions(source)
    records = instruction_records(source)  # in the same order: load_instructions refused any bad line
    items = []
    for example, record in zip(examples, records):
        if len(example.turns) < 2 or example.turns[-1].role != "assistant":
            raise InputError(f"{example.source}: a test example must end with the reference answer")
        keywords = record.get("keywords")
        if keywords is None:
            keywords = derive_keywords(example.turns[-1].content)
        items.append(QAItem(example, tuple(keywords)))
    return items


@torch.no_grad()
def answer_loss(model: GPT, tokenizer: Tokenizer, template: Template, examples: Sequence[Example],
                batch_size: int = 16) -> float:
    """Mean loss per answer token of ``examples`` (cut to the model's context, as SFT cuts them)."""
    data = build_sft_data(examples, template, tokenizer, model.config.block_size)
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data.examples), batch_size):
        batch = collate(data.examples[start:start + batch_size])
        tokens = int(answer_lengths(batch["labels"]).sum())
        total += float(sft_model_loss(model, batch["input_ids"], batch["labels"])) * tokens
        count += tokens
    return total / count


@dataclass(frozen=True)
class Answer:
    text: str
    stopped: bool  # ended with end-of-text or a stop string, not cut at max_new_tokens


def answer_config(template: Template | None, tokenizer: Tokenizer, max_new_tokens: int = MAX_NEW_TOKENS) -> GenerationConfig:
    """The one greedy setting every held-out answer is generated with."""
    return GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=eos_ids(template, tokenizer) or None,
                            stop_strings=stop_strings(template, tokenizer))


@torch.no_grad()
def generate_answers(model: GPT, tokenizer: Tokenizer, template: Template, questions: Sequence[Example | str],
                     max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 8) -> list[Answer]:
    """Greedy answers to ``questions`` (examples, whose last answer is left out, or plain questions).

    Prompts of similar length share a batch, padded on the left; each row stops on its own.
    """
    config = answer_config(template, tokenizer, max_new_tokens)
    if max_new_tokens >= model.config.block_size:
        raise InputError(f"max_new_tokens must be below the model's context of {model.config.block_size} tokens")
    prompts = []
    for question in questions:
        example = Example((Message("user", question),)) if isinstance(question, str) else _without_answer(question)
        prompts.append(encode_prompt(tokenizer, template, example)[-(model.config.block_size - max_new_tokens):])
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[Answer | None] = [None] * len(prompts)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in rows])
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in rows])
        output = generate(model, ids, config, attention_mask=mask, tokenizer=tokenizer)
        for row, i in enumerate(rows):
            new = output[row, width:].tolist()
            answers[i] = Answer(finished_text(tokenizer, new, config).strip(), _stopped(tokenizer, new, config))
    return answers


def answers(model: GPT, tokenizer: Tokenizer, template: Template, questions: Sequence[str],
            max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy answers to plain questions, as text."""
    return [answer.text for answer in generate_answers(model, tokenizer, template, questions, max_new_tokens)]


def qa_scores(model: GPT, tokenizer: Tokenizer, template: Template, items: Sequence[QAItem],
              max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 8) -> tuple[dict[str, float], list[Answer]]:
    """Mean answer scores over ``items`` (plus answer loss and the stop rate), and the answers themselves."""
    replies = generate_answers(model, tokenizer, template, [item.example for item in items], max_new_tokens, batch_size)
    scores = mean_scores([score_answer(reply.text, item.reference, list(item.keywords))
                          for reply, item in zip(replies, items)])
    scores["stops_properly"] = sum(reply.stopped for reply in replies) / len(replies)
    scores["answer_loss"] = answer_loss(model, tokenizer, template, [item.example for item in items])
    return scores, replies


def _without_answer(example: Example) -> Example:
    """The conversation up to the question: the reference answer is what the model must write."""
    if example.turns and example.turns[-1].role == "assistant":
        return Example(example.messages[:-1], example.input, example.source)
    return example


def _stopped(tokenizer: Tokenizer, new_ids: list[int], config: GenerationConfig) -> bool:
    if any(i in config.eos_ids for i in new_ids):
        return True
    return bool(config.stop_strings) and stop_index(tokenizer.decode(new_ids), config.stop_strings) is not None

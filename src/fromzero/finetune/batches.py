"""From examples to what a model is tuned on: token ids, labels, and padded or packed batches.

Each example becomes ``input_ids`` and ``labels`` of the same length, in transformers' convention
(the loss shifts them, :func:`fromzero.finetune.losses.sft_loss`): ``labels[t]`` is
``input_ids[t]`` where the loss applies and -100 (:data:`IGNORE_INDEX`) elsewhere, i.e. on the
prompt (unless ``train_on_prompt``) and on padding. The answer and the end-of-text token after it
are always labelled, so the model learns what to answer and also when to stop.

**Encoding.** Each segment of the template (:mod:`fromzero.finetune.templates`) is encoded on its
own: text as plain text (a ``<|endoftext|>`` typed inside a record stays characters), a special
token of the template as its single id. The prompt is thereby encoded exactly as it is at
inference, where it is all the model is given. The end of text is the tokenizer's
``<|endoftext|>``; a tokenizer without one (the character tokenizer) gets the blank-line
separator its model saw between documents in pretraining (:func:`fromzero.data.shards.separator_ids`).

**Length.** An example longer than ``max_length`` keeps its first ``max_length`` tokens (losing the
end of its answer, and with it the end-of-text token) and is counted as truncated. An example whose
answer would be cut away entirely (its prompt alone fills ``max_length``) is dropped and counted,
never trained on; when that is every example, ``--max-length`` is shorter than every prompt, an error.

**Padding.** :func:`collate` pads a batch on the right to its longest example, not to a fixed
length. A causal model needs no attention mask for that: a real token attends only to the positions
before it, never to the padding after it, and the padded positions' own outputs are ignored through
their -100 labels. The mask is returned anyway for models that take one.

**Packing.** :func:`pack` joins whole examples, in order, into rows of at most ``max_length`` tokens
(a new row when the next example would not fit), so that less compute goes into padding. Each
example keeps its labels. Attention is *not* reset between the examples of a row and positions run
on across it: with a causal model each example sees the examples packed before it, as pretraining
on concatenated documents does, and the end-of-text token between them tells the model that a new
one begins. It changes what an answer is conditioned on, a little, which is why it is optional.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from fromzero.data.shards import separator_ids
from fromzero.errors import InputError
from fromzero.finetune.instructions import Example
from fromzero.finetune.templates import Segment, Template
from fromzero.tokenizers import BPETokenizer, Tokenizer

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedExample:
    """One training row: ids and labels of the same length (-100 where there is no loss)."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class SFTData:
    """Examples ready to train on, and what became of the others."""

    examples: list[TokenizedExample]
    max_length: int
    lengths: list[int] = field(default_factory=list)  # tokens of every example before truncation, dropped ones too
    truncated: int = 0  # cut to max_length, still trained on
    dropped: int = 0  # answer cut away entirely: left out


def encode_text(tokenizer: Tokenizer, text: str) -> list[int]:
    """``text`` as plain text: special-token spellings in it are characters, never special ids."""
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode(text, disallowed_special=())
    return tokenizer.encode(text)


def encode_segments(tokenizer: Tokenizer, segments: Sequence[Segment]) -> tuple[list[int], list[bool]]:
    """The ids of ``segments`` and, for each id, whether it belongs to an answer."""
    ids: list[int] = []
    answer: list[bool] = []
    for segment in segments:
        if segment.special:
            if segment.text not in tokenizer.special_tokens:
                raise InputError(f"the tokenizer has no {segment.text} token, which the template needs: "
                                 "add it with fromzero.finetune.vocab.add_special_tokens")
            piece = [tokenizer.special_tokens[segment.text]]
        else:
            piece = encode_text(tokenizer, segment.text)
        ids += piece
        answer += [segment.answer] * len(piece)
    return ids, answer


def encode_prompt(tokenizer: Tokenizer, template: Template, example: Example) -> list[int]:
    """The ids a model is given at inference: the prompt of ``example``'s last answer."""
    return encode_segments(tokenizer, template.render(example, generation=True))[0]


def encode_example(tokenizer: Tokenizer, template: Template, example: Example) -> tuple[list[int], list[bool]]:
    """The ids of ``example`` in full, end-of-text token included, and which of them are answer."""
    try:
        ids, answer = encode_segments(tokenizer, template.render(example))
    except InputError as err:
        raise InputError(f"{example.source}: {err}" if example.source else str(err)) from None
    end = separator_ids(tokenizer)
    return ids + end, answer + [True] * len(end)


def label(ids: Sequence[int], answer: Sequence[bool], train_on_prompt: bool = False) -> list[int]:
    """The labels of ``ids``: the id where there is a loss, :data:`IGNORE_INDEX` where there is none."""
    return [i if train_on_prompt or is_answer else IGNORE_INDEX for i, is_answer in zip(ids, answer)]


def build_sft_data(
    examples: Sequence[Example],
    template: Template,
    tokenizer: Tokenizer,
    max_length: int,
    train_on_prompt: bool = False,
) -> SFTData:
    """Encode, label and cut ``examples`` to ``max_length`` (the rules are in the module docstring)."""
    if max_length < 2:
        raise InputError(f"--max-length must be at least 2 (a token and the one that follows), got {max_length}")
    data = SFTData([], max_length)
    prompt_lengths = []
    for example in examples:
        ids, answer = encode_example(tokenizer, template, example)
        data.lengths.append(len(ids))
        prompt_lengths.append(answer.index(True))
        # the first token is never predicted (nothing comes before it), so it cannot carry the answer
        if not any(answer[1:max_length]):
            data.dropped += 1
            continue
        data.truncated += len(ids) > max_length
        ids, answer = ids[:max_length], answer[:max_length]
        data.examples.append(TokenizedExample(ids, label(ids, answer, train_on_prompt)))
    if examples and not data.examples:
        raise InputError(f"--max-length {max_length} is shorter than every prompt (the shortest is "
                         f"{min(prompt_lengths)} tokens), so no answer is left to learn: raise --max-length")
    return data


def collate(examples: Sequence[TokenizedExample], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """``input_ids``, ``labels`` and ``attention_mask`` (B, longest), padded on the right.

    The pad id is never learned (its labels are -100) nor attended to by real tokens, so any
    valid id does.
    """
    if not examples:
        raise InputError("cannot make a batch of no examples")
    width = max(len(example) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def pack(examples: Sequence[TokenizedExample], max_length: int) -> list[TokenizedExample]:
    """Whole examples joined in order into rows of at most ``max_length`` tokens (see the module docstring)."""
    rows: list[TokenizedExample] = []
    ids: list[int] = []
    labels: list[int] = []
    for example in examples:
        if len(example) > max_length:
            raise InputError(f"an example of {len(example)} tokens does not fit a row of {max_length}; "
                             "cut examples to max_length first (build_sft_data does)")
        if ids and len(ids) + len(example) > max_length:
            rows.append(TokenizedExample(ids, labels))
            ids, labels = [], []
        ids.extend(example.input_ids)
        labels.extend(example.labels)
    if ids:
        rows.append(TokenizedExample(ids, labels))
    return rows

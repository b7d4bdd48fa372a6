"""Growing a vocabulary: special tokens a tokenizer gains, and the embedding rows its model gains.

The chat template marks turns with special tokens (``<|user|>`` ...) that a pretrained tokenizer
does not have. A BPE tokenizer gains them as new ids after its last one (GPT-2: 50257, 50258, ...);
its merges are untouched, so every other text keeps its ids. A character tokenizer cannot hold a
token of several characters: tune a character model with a template without special tokens (``qa``).

The model then needs one embedding row per new id. :func:`resize_token_embeddings` appends rows
equal to the mean of the existing rows, as Stanford Alpaca's ``smart_tokenizer_and_embedding_resize``
does (an untied output layer grows the same way). With GPT-2's tied output layer the new token's
logit then starts as the average of all the logits, so the tuned model does not begin by
predicting the new tokens everywhere, as a random row can make it (Hewitt, 2021, "Initializing
new word embeddings for pretrained language models"). All new rows start equal: they become
different only if the embedding is trained, which full fine-tuning does; with LoRA the embedding
must be trained too (PEFT's ``modules_to_save``). A model whose embedding already has a row for an
id (a vocabulary padded to a round size) keeps that row.

Saving needs nothing special: ``model.save_pretrained`` writes the grown matrix and the new
``vocab_size`` in ``config.json``, and ``tokenizer.save`` writes the new special tokens into
``fromzero_tokenizer.json``, so the two load back together.

:func:`load_model_tokenizer` and :func:`model_context` read what data preparation needs of a model
(its tokenizer, its context length) without loading the weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from fromzero.errors import InputError, MissingFileError
from fromzero.generation.prompts import model_tokenizer
from fromzero.models import GPT, GPTConfig
from fromzero.models.pretrained import CONFIG_FILE, HUB_MODELS, read_config
from fromzero.tokenizers import BPETokenizer, Tokenizer, load_tokenizer


def add_special_tokens(tokenizer: Tokenizer, tokens: Sequence[str]) -> Tokenizer:
    """``tokenizer`` with ``tokens`` among its special tokens: itself if it has them all, else a new
    BPE tokenizer whose missing tokens take the next ids, in the order given."""
    missing = [token for token in dict.fromkeys(tokens) if token not in tokenizer.special_tokens]
    if not missing:
        return tokenizer
    if not isinstance(tokenizer, BPETokenizer):
        raise InputError(f"a {tokenizer.kind} tokenizer cannot gain the special tokens {', '.join(missing)}: "
                         "use a model with a BPE tokenizer, or a template without special tokens (--template qa)")
    specials = dict(tokenizer.special_tokens)
    specials.update({token: tokenizer.vocab_size + i for i, token in enumerate(missing)})
    return BPETokenizer(tokenizer.ranks, tokenizer.pattern, specials, name=tokenizer.name, fast=tokenizer.fast)


def _grown(weight: torch.Tensor, rows: int) -> nn.Parameter:
    """``weight`` with ``rows`` more rows, each the mean of the existing ones."""
    mean = weight.detach().float().mean(dim=0, keepdim=True).to(weight.dtype)
    return nn.Parameter(torch.cat([weight.detach(), mean.expand(rows, -1)]), requires_grad=weight.requires_grad)


def resize_token_embeddings(model: GPT, vocab_size: int) -> int:
    """Give ``model`` a row for every id below ``vocab_size`` (see the module docstring); returns the rows added."""
    wte, head = model.transformer.wte, model.lm_head
    added = vocab_size - wte.num_embeddings
    if added <= 0:
        return 0
    wte.weight, wte.num_embeddings = _grown(wte.weight, added), vocab_size
    if not model.config.tie_weights:
        head.weight = _grown(head.weight, added)
    head.out_features = vocab_size
    model.config = dataclasses.replace(model.config, vocab_size=vocab_size)
    model.tie_weights()
    return added


def _model_folder(spec: str) -> Path | None:
    """The folder of ``spec``, or None for a hub name of the GPT-2 family; anything else is an error."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if spec in HUB_MODELS:
        return None
    raise MissingFileError(f"no model folder at {spec!r}: give a folder that holds a model "
                           f"(saved by `fromzero train` or transformers) or one of {', '.join(HUB_MODELS)}")


def load_model_tokenizer(spec: str) -> Tokenizer:
    """The tokenizer of a model folder (GPT-2's if it has none, as for the hub's GPT-2 folders) or of a hub name."""
    folder = _model_folder(spec)
    return load_tokenizer("gpt2") if folder is None else model_tokenizer(folder)


def model_context(spec: str) -> int | None:
    """The context length of a model folder's ``config.json`` or of a hub name; None if the folder has no config."""
    folder = _model_folder(spec)
    if folder is None:
        return GPTConfig.preset(spec).block_size
    return read_config(folder).block_size if (folder / CONFIG_FILE).is_file() else None

"""A trained translation model on disk, and the three architectures it can be.

A folder written by ``fromzero seq2seq train`` holds ``seq2seq.json`` (what the model is: its
architecture and shape, the special ids, how it was trained and how well it did), ``model.safetensors``
(the weights; never a pickle) and the tokenizer's files. Every file is written to a temporary name
and renamed, ``seq2seq.json`` last, so a folder that has one is complete.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.files import atomic_path, read_json, write_json
from fromzero.models.gru_seq2seq import GRUSeq2Seq, GRUSeq2SeqConfig
from fromzero.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from fromzero.seq2seq.config import ARCHS
from fromzero.seq2seq.data import PairVocab
from fromzero.tokenizers import load_tokenizer

SEQ2SEQ_JSON = "seq2seq.json"
WEIGHTS = "model.safetensors"
FORMAT = "fromzero-seq2seq"


def build_model(arch: str, shape: dict[str, Any]) -> torch.nn.Module:
    """A fresh model of ``arch`` with the config fields in ``shape``."""
    if arch == "transformer":
        return Seq2SeqTransformer(Seq2SeqConfig(**shape))
    if arch in ("gru", "gru-attention"):
        return GRUSeq2Seq(GRUSeq2SeqConfig(**{**shape, "attention": arch == "gru-attention"}))
    raise InputError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}")


def save_seq2seq(model: torch.nn.Module, vocab: PairVocab, directory: str | Path, record: dict[str, Any]) -> None:
    """Weights, tokenizer, then ``seq2seq.json`` (``record`` plus the model's shape)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS) as tmp:
        save_model(model, str(tmp))  # tied tables are stored once
    vocab.tokenizer.save(directory)
    shape = dataclasses.asdict(model.config)
    shape.pop("attention", None)  # the GRU's is part of its arch name
    write_json(directory / SEQ2SEQ_JSON, {"format": FORMAT, **record, "model": shape,
                                          "special_ids": {"pad": vocab.pad, "bos": vocab.bos, "eos": vocab.eos}})


def load_seq2seq(directory: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, PairVocab, dict[str, Any]]:
    """The model (in eval mode), its vocabulary and its ``seq2seq.json`` record."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise MissingFileError(f"no model folder at {directory}: train one with `fromzero seq2seq train --out DIR`")
    if not (directory / SEQ2SEQ_JSON).is_file():
        kind = "a GPT (its config.json)" if (directory / "config.json").is_file() else "no seq2seq.json"
        raise InputError(f"{directory} holds {kind}, not a translation model: give a folder written by "
                         "`fromzero seq2seq train`")
    record = read_json(directory / SEQ2SEQ_JSON)
    if not isinstance(record, dict) or record.get("format") != FORMAT or "arch" not in record:
        raise CorruptFileError(f"{directory / SEQ2SEQ_JSON} is not a fromzero seq2seq record; retrain the model")
    vocab = PairVocab(load_tokenizer(directory))
    ids = record.get("special_ids", {})
    if ids != {"pad": vocab.pad, "bos": vocab.bos, "eos": vocab.eos}:
        raise CorruptFileError(f"the tokenizer in {directory} does not match its model (special ids {ids}, "
                               f"expected {vocab.pad}, {vocab.bos}, {vocab.eos}); retrain the model")
    model = build_model(record["arch"], record["model"])
    try:
        missing, unexpected = load_model(model, str(directory / WEIGHTS), strict=False)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CorruptFileError(f"cannot read {directory / WEIGHTS} ({err}); retrain or copy the folder again") from None
    if missing or unexpected:
        raise CorruptFileError(f"{directory / WEIGHTS} does not fit its seq2seq.json (missing {sorted(missing)[:3]}, "
                               f"unexpected {sorted(unexpected)[:3]})")
    return model.to(device).eval(), vocab, record

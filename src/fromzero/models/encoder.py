"""A BERT encoder: the same attention and feed-forward maths as the GPT, arranged to read, not to write.

Architecture (BERT, and MiniLM, a small BERT distilled from a big one)::

    input_ids (B, T)
      -> token embedding + learned position embedding + token type embedding -> LayerNorm
      -> n_layer x post-LN block: x = LN(x + attention(x)); x = LN(x + feed_forward(x))
      -> last_hidden_state (B, T, hidden): one vector per token

Three differences from :class:`~fromzero.models.GPT`:

* **No causal mask.** A GPT predicts the next token, so it may only look back; an encoder sees
  the whole sentence at once, every token attending to every other. Only padding is masked.
* **Post-LN.** The LayerNorm comes *after* each residual addition (the original Transformer's
  arrangement) instead of before each sub-layer, so there is no final ``ln_f``.
* **Token types.** A second embedding says which of two sentences a token belongs to (BERT was
  trained on sentence pairs); a single sentence is all type 0.

The attention and feed-forward layers are :mod:`fromzero.nn`'s own; only the block is new here,
because :class:`fromzero.nn.Block` is pre-LN. BERT stores separate ``query``/``key``/``value``
matrices; :func:`load_encoder_weights` stacks them into the fused ``c_attn`` matrix that
:class:`~fromzero.nn.MultiHeadAttention` multiplies by once (rows ``[Q; K; V]``, the same numbers).
The GELU is the exact (erf) one, which BERT's ``"gelu"`` means.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fromzero.errors import CorruptFileError, InputError
from fromzero.files import read_json
from fromzero.models.pretrained import CONFIG_FILE, read_weights
from fromzero.nn import FeedForward, LearnedPositionalEmbedding, MultiHeadAttention, TokenEmbedding

# BERT names (after dropping a "bert." prefix) -> ours. "{n}" is the layer number.
_BERT_NAMES = {
    "embeddings.word_embeddings": "wte",
    "embeddings.position_embeddings": "wpe",
    "embeddings.token_type_embeddings": "wtt",
    "embeddings.LayerNorm": "ln_emb",
    "encoder.layer.{n}.attention.output.dense": "h.{n}.attn.c_proj",
    "encoder.layer.{n}.attention.output.LayerNorm": "h.{n}.ln_1",
    "encoder.layer.{n}.intermediate.dense": "h.{n}.mlp.c_fc",
    "encoder.layer.{n}.output.dense": "h.{n}.mlp.c_proj",
    "encoder.layer.{n}.output.LayerNorm": "h.{n}.ln_2",
}
_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)$")
# Old TensorFlow-converted checkpoints name LayerNorm parameters gamma and beta.
_OLD_LAYER_NORM = {".gamma": ".weight", ".beta": ".bias"}


@dataclass
class EncoderConfig:
    """The shape of a BERT encoder, with the field names of Hugging Face's ``config.json``."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise InputError(f"hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")

    @classmethod
    def from_hf(cls, raw: dict[str, Any], source: Path | str = CONFIG_FILE) -> EncoderConfig:
        """Read a transformers ``BertConfig`` dict, refusing variants this encoder would run wrongly."""
        if raw.get("model_type") != "bert":
            raise InputError(f"{source}: model_type {raw.get('model_type')!r} is not a BERT model")
        if raw.get("hidden_act", "gelu") != "gelu":
            raise InputError(f"{source}: hidden_act {raw['hidden_act']!r} is not supported (only exact gelu)")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise InputError(f"{source}: position_embedding_type {raw['position_embedding_type']!r} is not "
                             "supported (only absolute)")
        try:
            return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        except (InputError, TypeError) as err:
            raise InputError(f"{source}: {err}") from None


@dataclass
class EncoderOutput:
    """``last_hidden_state`` (B, T, hidden); ``attentions``: per layer (B, heads, T, T), or None."""

    last_hidden_state: torch.Tensor
    attentions: tuple[torch.Tensor, ...] | None = None


class EncoderBlock(nn.Module):
    """Post-LN block: ``ln_1(x + attn(x))``, then ``ln_2(x + mlp(x))`` (BERT's ``encoder.layer.N``)."""

    def __init__(self, config: EncoderConfig, layer_idx: int = 0) -> None:
        super().__init__()
        width = config.hidden_size
        self.attn = MultiHeadAttention(width, config.num_attention_heads, layer_idx=layer_idx)
        self.ln_1 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = FeedForward(width, config.intermediate_size, activation="gelu")
        self.ln_2 = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attn(x, mask=mask, need_weights=need_weights)
        x = self.ln_1(x + attended)
        return self.ln_2(x + self.mlp(x)), weights


class Encoder(nn.Module):
    """BERT encoder: embeddings, then ``num_hidden_layers`` post-LN blocks; no output head."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = TokenEmbedding(config.vocab_size, config.hidden_size)
        self.wpe = LearnedPositionalEmbedding(config.max_position_embeddings, config.hidden_size)
        self.wtt = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.ln_emb = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.h = nn.ModuleList(EncoderBlock(config, i) for i in range(config.num_hidden_layers))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> EncoderOutput:
        """Hidden states of ``input_ids`` (B, T); ``attention_mask`` (B, T) is 1 for tokens, 0 for padding.

        Padded keys get zero attention weight; the hidden states *at* padded positions are
        meaningless and must be left out of any pooling.
        """
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        steps = input_ids.size(1)
        if steps > self.config.max_position_embeddings:
            raise InputError(f"{steps} tokens do not fit this encoder's "
                             f"{self.config.max_position_embeddings} positions; truncate the input")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise InputError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                             f"got {tuple(attention_mask.shape)}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        try:
            x = self.wte(input_ids) + self.wtt(token_type_ids)
        except IndexError:
            raise InputError(f"input_ids must lie in 0..{self.config.vocab_size - 1} and token_type_ids in "
                             f"0..{self.config.type_vocab_size - 1}") from None
        x = self.ln_emb(x + self.wpe(torch.arange(steps, device=input_ids.device)))
        # (B, 1, 1, T): every query may look at every real key; None when nothing is padded (faster).
        mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()[:, None, None, :]
        attentions = []
        for block in self.h:
            x, weights = block(x, mask, output_attentions)
            attentions.append(weights)
        return EncoderOutput(x, tuple(attentions) if output_attentions else None)


def load_encoder_weights(
    folder: str | os.PathLike, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Encoder:
    """The encoder of a Hugging Face BERT folder (``config.json`` + ``model.safetensors``), in eval mode.

    Keys may carry a ``bert.`` prefix (``BertForMaskedLM`` and friends) or not (``BertModel``);
    weights outside the encoder (the pooler, prediction heads) are not used and are skipped.
    """
    folder = Path(folder)
    raw = read_json(folder / CONFIG_FILE, hint="a BERT folder needs config.json next to model.safetensors")
    if not isinstance(raw, dict):
        raise CorruptFileError(f"{folder / CONFIG_FILE} must hold a JSON object")
    config = EncoderConfig.from_hf(raw, folder / CONFIG_FILE)
    state = _to_encoder_keys(read_weights(folder))
    with torch.device("meta"):
        model = Encoder(config)  # shapes only: no memory, no random init
    for key, expected in model.state_dict().items():
        if key not in state:
            raise CorruptFileError(f"the checkpoint in {folder} has no weight for {key!r} (config.json expects it)")
        if state[key].shape != expected.shape:
            raise CorruptFileError(f"the checkpoint in {folder}: {key!r} has shape {tuple(state[key].shape)}, "
                                   f"but config.json expects {tuple(expected.shape)}")
    state = {key: state[key].to(dtype=dtype or torch.float32, device=device or "cpu") for key in model.state_dict()}
    model.load_state_dict(state, assign=True)
    return model.eval()


def _to_encoder_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename BERT keys to ours and stack each layer's query/key/value into one ``c_attn``."""
    renamed: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        key = key.removeprefix("bert.")
        for old, new in _OLD_LAYER_NORM.items():
            if "LayerNorm" in key and key.endswith(old):
                key = key.removesuffix(old) + new
        if match := _QKV.match(key):
            layer, part, kind = match.groups()
            qkv.setdefault((layer, kind), {})[part] = tensor
            continue
        module, _, kind = key.rpartition(".")
        layer = module.split(".")[2] if module.startswith("encoder.layer.") else None
        name = _BERT_NAMES.get(module if layer is None else module.replace(f".{layer}.", ".{n}.", 1))
        if name is not None:
            renamed[f"{name.format(n=layer)}.{kind}"] = tensor
    for (layer, kind), parts in qkv.items():
        if len(parts) == 3:  # an incomplete layer stays missing, and the check names it
            renamed[f"h.{layer}.attn.c_attn.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return renamed

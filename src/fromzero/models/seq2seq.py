"""The original Transformer ("Attention Is All You Need", Vaswani et al., 2017): an encoder reads the
source sentence, a decoder writes the target one token at a time while looking back at it.

    source ids -> embed + positions -> N x EncoderBlock -> memory
    target ids (BOS, y1, y2 ...) -> embed + positions -> N x DecoderBlock(memory) -> logits of (y1, y2, ..., EOS)

A GPT is the decoder alone, reading its own past. Translation needs two sequences: every target
position attends causally to the target so far *and*, through cross-attention, to every source
position; those cross-attention weights are the alignment a learner can plot.

Padding: sources are padded on the right with ``pad_id``; the encoder hides those positions from
every attention (a boolean mask, True = real). Targets are padded on the right too: a real position
never looks right (causal), so only the loss needs to skip them (``ignore_index``).

Decoding: :meth:`Seq2SeqTransformer.encode` runs once per source; :meth:`Seq2SeqTransformer.memory_kv`
turns its output into each decoder layer's cross-attention keys and values, once; then
:meth:`Seq2SeqTransformer.decode` takes the newest target tokens with a :class:`KVCache` for the
decoder's self-attention, exactly as a GPT decodes (tested equal to one pass over the whole target).

Loss: cross-entropy with *label smoothing* (the paper's 0.1): the target distribution puts
``1 - eps`` on the right token and spreads ``eps`` over the vocabulary, which keeps the model from
becoming over-confident and improved the paper's BLEU.

Generating: :meth:`Seq2SeqTransformer.start_decoding` returns a :class:`Seq2SeqDecoding`, the
encoded source and the decoder's cache behind the ``step``/``select`` interface that
:mod:`fromzero.generation`'s greedy, sampling and beam search drive (``generate_from_source``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fromzero.errors import InputError
from fromzero.models.kv_cache import KVCache
from fromzero.nn import (
    ACTIVATIONS,
    DecoderBlock,
    EncoderBlock,
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    causal_mask,
)


@dataclass
class Seq2SeqConfig:
    """The shape of an encoder–decoder. The paper's base model: 6 + 6 layers, 512 wide, 8 heads, 2048 inner."""

    src_vocab_size: int
    tgt_vocab_size: int
    block_size: int = 128  # the longest source or target, in tokens
    n_encoder_layer: int = 3
    n_decoder_layer: int = 3
    n_head: int = 4
    n_embd: int = 128
    n_inner: int | None = None  # 4 * n_embd when None
    dropout: float = 0.1
    activation: str = "relu"
    norm_first: bool = True  # pre-LN; False: the paper's post-LN
    pos_encoding: str = "sinusoidal"  # or "learned"
    share_embeddings: bool = False  # one table for source and target (needs one vocabulary)
    pad_id: int = 0
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise InputError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.pos_encoding not in ("sinusoidal", "learned"):
            raise InputError(f"pos_encoding must be 'sinusoidal' or 'learned', got {self.pos_encoding!r}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise InputError("share_embeddings needs one vocabulary for source and target, got sizes "
                             f"{self.src_vocab_size} and {self.tgt_vocab_size}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


def seq2seq_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int, label_smoothing: float) -> torch.Tensor:
    """Label-smoothed cross-entropy over the real target tokens (padding skipped): the mean per token."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=pad_id,
                           label_smoothing=label_smoothing)


def check_teacher_forcing(src: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor | None) -> None:
    """The shapes every encoder–decoder's forward needs: (batch, length) ids, one batch, targets like tgt_in."""
    if src.dim() != 2 or tgt_in.dim() != 2 or src.size(0) != tgt_in.size(0):
        raise InputError(f"src and tgt_in must be (batch, length) with one batch size, got "
                         f"{tuple(src.shape)} and {tuple(tgt_in.shape)}")
    if targets is not None and targets.shape != tgt_in.shape:
        raise InputError(f"targets must have the shape of tgt_in {tuple(tgt_in.shape)}, got {tuple(targets.shape)}")


@dataclass
class Seq2SeqOutput:
    logits: torch.Tensor  # (batch, T, tgt_vocab_size)
    loss: torch.Tensor | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None  # per decoder layer: (batch, n_head, T, S)
    decoder_attentions: tuple[torch.Tensor, ...] | None = None  # per decoder layer: (batch, n_head, T, T)
    encoder_attentions: tuple[torch.Tensor, ...] | None = None  # per encoder layer: (batch, n_head, S, S)


class Seq2SeqTransformer(nn.Module):
    """Encoder–decoder Transformer built from :mod:`fromzero.nn` blocks; see the module docstring."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        block = dict(n_inner=c.n_inner, activation=c.activation, dropout=c.dropout, norm_first=c.norm_first)
        self.src_embed = TokenEmbedding(c.src_vocab_size, c.n_embd)
        self.tgt_embed = self.src_embed if c.share_embeddings else TokenEmbedding(c.tgt_vocab_size, c.n_embd)
        self.positions = (SinusoidalPositionalEncoding(c.n_embd) if c.pos_encoding == "sinusoidal"
                          else LearnedPositionalEmbedding(c.block_size, c.n_embd))
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(c.n_embd, c.n_head, **block) for _ in range(c.n_encoder_layer))
        self.decoder = nn.ModuleList(DecoderBlock(c.n_embd, c.n_head, layer_idx=i, **block)
                                     for i in range(c.n_decoder_layer))
        # pre-LN leaves the residual stream un-normalised: one LayerNorm closes each stack (as GPT-2's ln_f)
        self.ln_encoder = nn.LayerNorm(c.n_embd) if c.norm_first else nn.Identity()
        self.ln_decoder = nn.LayerNorm(c.n_embd) if c.norm_first else nn.Identity()
        self.lm_head = nn.Linear(c.n_embd, c.tgt_vocab_size, bias=False)
        self.lm_head.weight = self.tgt_embed.weight  # tied, as in the paper (section 3.4)
        self._init_weights()

    def _init_weights(self) -> None:
        """Matrices Xavier-uniform (as PyTorch's nn.Transformer); embeddings N(0, 1/n_embd), so that
        after the sqrt(n_embd) scaling a token vector has unit size, and the tied output layer starts
        with logits of order 1 (with N(0, 1) tables the first loss would be ~30 instead of ~log V)."""
        for name, parameter in self.named_parameters():
            if parameter.dim() > 1 and "embed" not in name:
                nn.init.xavier_uniform_(parameter)
        for table in {self.src_embed, self.tgt_embed}:
            nn.init.normal_(table.weight, std=self.config.n_embd ** -0.5)

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        if ids.size(1) + start > self.config.block_size:
            raise InputError(f"{ids.size(1) + start} tokens are more than the model's block_size "
                             f"{self.config.block_size}")
        positions = torch.arange(start, start + ids.size(1), device=ids.device)
        # the paper scales the embeddings by sqrt(d_model) so they are not drowned by the positions
        x = table(ids) * math.sqrt(self.config.n_embd) + self.positions(positions).to(table.weight.dtype)
        return self.drop(x)

    def source_mask(self, src: torch.Tensor) -> torch.Tensor:
        """(batch, 1, 1, S), True at real (non-padding) source tokens."""
        return (src != self.config.pad_id)[:, None, None, :]

    def encode(self, src: torch.Tensor, *, weights: list | None = None) -> torch.Tensor:
        """The memory (batch, S, n_embd) of source ids (batch, S), right-padded with ``pad_id``; each layer's
        self-attention weights are appended to ``weights`` when it is given."""
        x, mask = self._embed(self.src_embed, src), self.source_mask(src)
        for block in self.encoder:
            x, layer_weights = block(x, mask=mask, need_weights=weights is not None)
            if weights is not None:
                weights.append(layer_weights)
        return self.ln_encoder(x)

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each decoder layer's cross-attention keys and values of ``memory``: computed once per source."""
        return [block.cross.memory_kv(memory) for block in self.decoder]

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for the decoder's self-attention."""
        c = self.config
        return KVCache(c.n_decoder_layer, batch, c.n_head, c.n_embd // c.n_head, max_len or c.block_size,
                       dtype=self.tgt_embed.weight.dtype, device=self.tgt_embed.weight.device)

    def decode(self, tgt: torch.Tensor, memory_kv: list[tuple[torch.Tensor, torch.Tensor]], memory_mask: torch.Tensor,
               *, cache: KVCache | None = None, need_weights: bool = False) -> Seq2SeqOutput:
        """Logits for target ids (batch, T): the whole target so far, or with ``cache`` only its newest tokens."""
        past = 0 if cache is None else cache.seq_len
        x = self._embed(self.tgt_embed, tgt, start=past)
        crosses, selves = [], []
        for block, kv in zip(self.decoder, memory_kv):
            # the cache holds only earlier positions: a single new token may see all of them; several
            # new tokens at once need the causal mask offset by what is cached
            causal = tgt.size(1) > 1
            mask = causal_mask(tgt.size(1), past + tgt.size(1), device=tgt.device) if causal and past else None
            x, own, cross = block(x, kv, mask=mask, is_causal=causal and past == 0, memory_mask=memory_mask,
                                  cache=cache, need_weights=need_weights)
            crosses.append(cross)
            selves.append(own)
        if cache is not None:
            cache.advance(tgt.size(1))
        logits = self.lm_head(self.ln_decoder(x))
        if not need_weights:
            return Seq2SeqOutput(logits)
        return Seq2SeqOutput(logits, cross_attentions=tuple(crosses), decoder_attentions=tuple(selves))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor | None = None, *,
                need_weights: bool = False) -> Seq2SeqOutput:
        """Teacher forcing: ``tgt_in`` is BOS + the target, ``targets`` the target + EOS (padding: ``pad_id``,
        skipped by the loss). Returns logits for every target position, and the label-smoothed loss."""
        check_teacher_forcing(src, tgt_in, targets)
        encoder_weights = [] if need_weights else None
        memory = self.encode(src, weights=encoder_weights)
        out = self.decode(tgt_in, self.memory_kv(memory), self.source_mask(src), need_weights=need_weights)
        if encoder_weights is not None:
            out.encoder_attentions = tuple(encoder_weights)
        if targets is not None:
            out.loss = seq2seq_loss(out.logits, targets, self.config.pad_id, self.config.label_smoothing)
        return out

    def start_decoding(self, src: torch.Tensor, max_len: int) -> Seq2SeqDecoding:
        """Encode ``src`` (batch, S) once, for a decoding of at most ``max_len`` target tokens (BOS included)."""
        return Seq2SeqDecoding(self, src, max_len)


class Seq2SeqDecoding:
    """One source batch being translated: what :mod:`fromzero.generation` steps through.

    ``step(tokens)`` appends one token per row (rows,) and returns the next-token logits (rows, V);
    ``select(rows)`` keeps (and repeats) rows, as beam search does after every step. The encoder ran
    once; the cross-attention keys/values, the source mask and the self-attention cache follow the rows.
    """

    def __init__(self, model: Seq2SeqTransformer, src: torch.Tensor, max_len: int):
        if max_len > model.config.block_size:
            raise InputError(f"{max_len} target tokens are more than the model's block_size {model.config.block_size}")
        self.model = model
        self.memory_kv = model.memory_kv(model.encode(src))
        self.memory_mask = model.source_mask(src)
        self.cache = model.new_cache(src.size(0), max_len)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model.decode(tokens.view(-1, 1), self.memory_kv, self.memory_mask, cache=self.cache)
        return out.logits[:, -1].float()

    def select(self, rows: torch.Tensor) -> None:
        self.memory_kv = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.memory_kv]
        self.memory_mask = self.memory_mask.index_select(0, rows)
        self.cache.reorder(rows)


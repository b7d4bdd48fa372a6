"""The recurrent encoder–decoder that the Transformer replaced: a GRU reads the source, another GRU
writes the target (Sutskever et al., 2014; Cho et al., 2014), optionally looking back at the source
through attention (Bahdanau et al., 2015; Luong et al., 2015).

    source ids -> embed -> bidirectional GRU -> outputs (B, S, 2H), last states -> decoder's first state
    target ids (BOS, y1, y2 ...) -> embed -> GRU -> [attention over the outputs] -> logits of (y1, ..., EOS)

Why keep it: it is the baseline that makes the Transformer's two ideas visible. Without attention
the whole source must squeeze through one fixed-size vector (the decoder's initial hidden state), and
long sentences suffer: the *bottleneck*. Attention lets every target position look at every source
position, and then the recurrence itself turns out to be the slow part (one step after another,
where a Transformer layer handles all positions at once): hence "Attention Is All You Need".

Attention here is Luong's *global* attention with the "general" score: at target step t the decoder
state h_t scores each source position s as ``h_t^T W_a h_s``; the softmax of the scores (padding
masked out) weights the source into a context vector c_t, and ``tanh(W_c [c_t; h_t])`` feeds the
output layer. Because h_t does not depend on the attention (no "input feeding"), the decoder GRU runs
over the whole teacher-forced target in one call, every position trained at once.

Padding: sources are padded on the right with ``pad_id``. The encoder runs on *packed* sequences, so
a padded row's states are exactly those of the row alone, and attention never looks at padding.
Targets are padded on the right too: a recurrence only looks left, so only the loss skips them.

It shares :class:`~fromzero.models.seq2seq.Seq2SeqOutput`, the label-smoothed loss and the
``start_decoding``/``step``/``select`` interface with :class:`~fromzero.models.seq2seq.Seq2SeqTransformer`,
so the same training loop and the same greedy/beam search drive either model. Decoding needs no KV
cache: the GRU's hidden state *is* the summary of the target so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fromzero.errors import InputError
from fromzero.models.seq2seq import Seq2SeqOutput, check_teacher_forcing, seq2seq_loss


@dataclass
class GRUSeq2SeqConfig:
    """The shape of a recurrent encoder–decoder. ``attention=False`` gives the classic bottleneck model."""

    src_vocab_size: int
    tgt_vocab_size: int
    block_size: int = 128  # the longest source or target, in tokens
    n_embd: int = 128  # token embedding size
    n_hidden: int = 256  # GRU state size (each direction of the encoder, and the decoder)
    n_layer: int = 1  # stacked GRU layers, in the encoder and in the decoder
    attention: bool = True
    dropout: float = 0.1
    share_embeddings: bool = False  # one table for source and target (needs one vocabulary)
    pad_id: int = 0
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "block_size", "n_embd", "n_hidden", "n_layer"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise InputError("share_embeddings needs one vocabulary for source and target, got sizes "
                             f"{self.src_vocab_size} and {self.tgt_vocab_size}")
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise InputError(f"pad_id must be a token id of both vocabularies, got {self.pad_id}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise InputError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


class GRUSeq2Seq(nn.Module):
    """GRU encoder–decoder with optional Luong attention; see the module docstring."""

    def __init__(self, config: GRUSeq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        between_layers = c.dropout if c.n_layer > 1 else 0.0  # nn.GRU's dropout acts only between layers
        self.src_embed = nn.Embedding(c.src_vocab_size, c.n_embd)
        self.tgt_embed = self.src_embed if c.share_embeddings else nn.Embedding(c.tgt_vocab_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.GRU(c.n_embd, c.n_hidden, c.n_layer, batch_first=True, bidirectional=True,
                              dropout=between_layers)
        self.bridge = nn.Linear(2 * c.n_hidden, c.n_hidden)  # final (forward; backward) -> decoder's first state
        self.decoder = nn.GRU(c.n_embd, c.n_hidden, c.n_layer, batch_first=True, dropout=between_layers)
        if c.attention:
            self.memory_proj = nn.Linear(2 * c.n_hidden, c.n_hidden)  # encoder outputs -> decoder's size
            self.attn_score = nn.Linear(c.n_hidden, c.n_hidden, bias=False)  # W_a of h_t^T W_a h_s
            self.attn_combine = nn.Linear(2 * c.n_hidden, c.n_hidden, bias=False)  # W_c of tanh(W_c [c_t; h_t])
        self.lm_head = nn.Linear(c.n_hidden, c.tgt_vocab_size)

    def _check_length(self, ids: torch.Tensor, what: str) -> None:
        if ids.size(1) > self.config.block_size:
            raise InputError(f"a {what} of {ids.size(1)} tokens is more than the model's block_size "
                             f"{self.config.block_size}")

    def source_mask(self, src: torch.Tensor) -> torch.Tensor:
        """(batch, S), True at real (non-padding) source tokens."""
        return src != self.config.pad_id

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Source ids (batch, S), right-padded, -> (attention memory (batch, S, n_hidden) or None without
        attention, the decoder's initial hidden state (n_layer, batch, n_hidden))."""
        self._check_length(src, "source")
        mask = self.source_mask(src)
        lengths = mask.sum(dim=1)
        if src.size(1) == 0 or bool((lengths == 0).any()):
            raise InputError("every source needs at least one real token (not pad_id)")
        if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise InputError("sources must be padded on the right: no real token after a pad_id")
        packed = pack_padded_sequence(self.drop(self.src_embed(src)), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, last = self.encoder(packed)
        # last: (n_layer * 2, B, H), ordered layer 0 forward, layer 0 backward, layer 1 forward, ...
        last = last.view(self.config.n_layer, 2, src.size(0), self.config.n_hidden)
        hidden = torch.tanh(self.bridge(torch.cat([last[:, 0], last[:, 1]], dim=-1)))
        if not self.config.attention:
            return None, hidden
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
        return self.memory_proj(outputs), hidden

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor | None, memory_mask: torch.Tensor,
               hidden: torch.Tensor, *, need_weights: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Target ids (batch, T) from state ``hidden`` -> (logits (batch, T, V), the new hidden state,
        attention weights (batch, T, S) when ``need_weights`` and the model attends, else None)."""
        states, hidden = self.decoder(self.drop(self.tgt_embed(tgt)), hidden)  # states: (B, T, H)
        weights = None
        if self.config.attention:
            scores = states @ self.attn_score(memory).transpose(1, 2)  # (B, T, S)
            scores = scores.masked_fill(~memory_mask[:, None, :], float("-inf"))
            attention = F.softmax(scores, dim=-1)
            context = attention @ memory  # (B, T, H)
            states = torch.tanh(self.attn_combine(torch.cat([context, states], dim=-1)))
            weights = attention if need_weights else None
        return self.lm_head(self.drop(states)), hidden, weights

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor | None = None, *,
                need_weights: bool = False) -> Seq2SeqOutput:
        """Teacher forcing: ``tgt_in`` is BOS + the target, ``targets`` the target + EOS (padding: ``pad_id``,
        skipped by the loss). Returns logits for every target position, and the label-smoothed loss."""
        check_teacher_forcing(src, tgt_in, targets)
        self._check_length(tgt_in, "target")
        memory, hidden = self.encode(src)
        logits, _, weights = self.decode(tgt_in, memory, self.source_mask(src), hidden, need_weights=need_weights)
        out = Seq2SeqOutput(logits, cross_attentions=(weights[:, None],) if weights is not None else None)
        if targets is not None:
            out.loss = seq2seq_loss(logits, targets, self.config.pad_id, self.config.label_smoothing)
        return out

    def start_decoding(self, src: torch.Tensor, max_len: int) -> GRUDecoding:
        """Encode ``src`` (batch, S) once, for a decoding of at most ``max_len`` target tokens (BOS included)."""
        return GRUDecoding(self, src, max_len)


class GRUDecoding:
    """One source batch being translated, behind the interface of :class:`~fromzero.models.seq2seq.Seq2SeqDecoding`.

    ``step(tokens)`` feeds one token per row (rows,) and returns the next-token logits (rows, V);
    ``select(rows)`` keeps (and repeats) rows, as beam search does after every step. The encoder ran
    once; its memory, the source mask and the decoder's hidden state follow the rows.
    """

    def __init__(self, model: GRUSeq2Seq, src: torch.Tensor, max_len: int):
        if max_len > model.config.block_size:
            raise InputError(f"{max_len} target tokens are more than the model's block_size {model.config.block_size}")
        self.model = model
        self.memory, self.hidden = model.encode(src)
        self.memory_mask = model.source_mask(src)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, self.hidden, _ = self.model.decode(tokens.view(-1, 1), self.memory, self.memory_mask, self.hidden)
        return logits[:, -1].float()

    def select(self, rows: torch.Tensor) -> None:
        self.hidden = self.hidden.index_select(1, rows)  # (n_layer, rows, H): rows are dim 1
        self.memory_mask = self.memory_mask.index_select(0, rows)
        if self.memory is not None:
            self.memory = self.memory.index_select(0, rows)

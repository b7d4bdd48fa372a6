"""Transformer building blocks, each in its own short module, read in this order:

1. :mod:`~fromzero.nn.embeddings`: token embeddings and positional encodings (learned, sinusoidal);
2. :mod:`~fromzero.nn.attention`: scaled dot-product attention, the causal mask, multi-head attention;
3. :mod:`~fromzero.nn.feedforward`: the per-position MLP with GELU;
4. :mod:`~fromzero.nn.block`: the pre-LN block that combines them.

:mod:`fromzero.models` stacks these into a GPT.
"""

from fromzero.nn.attention import KeyValueStore, MultiHeadAttention, causal_mask, scaled_dot_product_attention
from fromzero.nn.block import Block
from fromzero.nn.embeddings import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, TokenEmbedding
from fromzero.nn.feedforward import ACTIVATIONS, FeedForward, gelu

__all__ = [
    "ACTIVATIONS",
    "Block",
    "FeedForward",
    "KeyValueStore",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "causal_mask",
    "gelu",
    "scaled_dot_product_attention",
]

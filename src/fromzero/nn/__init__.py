"""Transformer building blocks, each in its own short module, read in this order:

1. :mod:`~fromzero.nn.embeddings`: token embeddings and positional encodings (learned, sinusoidal);
2. :mod:`~fromzero.nn.attention`: scaled dot-product attention, the causal mask, multi-head attention;
3. :mod:`~fromzero.nn.feedforward`: the per-position MLP with GELU;
4. :mod:`~fromzero.nn.block`: the pre-LN block that combines them;
5. :mod:`~fromzero.nn.cross_attention` and :mod:`~fromzero.nn.encoder_decoder`: the original
   Transformer's decoder looking at its encoder, and its encoder and decoder blocks.

:mod:`fromzero.models` stacks these into a GPT.
"""

from fromzero.nn.attention import KeyValueStore, MultiHeadAttention, causal_mask, scaled_dot_product_attention
from fromzero.nn.block import Block
from fromzero.nn.cross_attention import CrossAttention
from fromzero.nn.encoder_decoder import DecoderBlock, EncoderBlock
from fromzero.nn.embeddings import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, TokenEmbedding
from fromzero.nn.feedforward import ACTIVATIONS, FeedForward, activate

__all__ = [
    "ACTIVATIONS",
    "Block",
    "CrossAttention",
    "DecoderBlock",
    "EncoderBlock",
    "FeedForward",
    "KeyValueStore",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "activate",
    "causal_mask",
    "scaled_dot_product_attention",
]

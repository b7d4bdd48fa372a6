"""Language models built from :mod:`fromzero.nn` blocks.

* :mod:`~fromzero.models.config`: :class:`GPTConfig` and its presets;
* :mod:`~fromzero.models.gpt`: :class:`GPT` and the forward contract;
* :mod:`~fromzero.models.context`: the context-length policy (what fits, what slides);
* :mod:`~fromzero.models.kv_cache`: :class:`KVCache` for fast incremental decoding;
* :mod:`~fromzero.models.pretrained`: reading and writing Hugging Face GPT-2 checkpoints;
* :mod:`~fromzero.models.encoder`: a BERT-family encoder (post-LN, bidirectional) that loads BERT
  and sentence-transformers folders, for sentence embeddings;
* :mod:`~fromzero.models.seq2seq`: the original encoder–decoder Transformer, for translation;
* :mod:`~fromzero.models.gru_seq2seq`: the GRU encoder–decoder (with or without attention) it replaced.
"""

from fromzero.models.config import PRESETS, GPTConfig
from fromzero.models.encoder import Encoder, EncoderConfig, EncoderOutput, load_encoder_weights
from fromzero.models.gpt import GPT, GPTOutput
from fromzero.models.gru_seq2seq import GRUSeq2Seq, GRUSeq2SeqConfig
from fromzero.models.kv_cache import KVCache
from fromzero.models.seq2seq import Seq2SeqConfig, Seq2SeqOutput, Seq2SeqTransformer

__all__ = ["GPT", "Encoder", "EncoderConfig", "EncoderOutput", "GPTConfig", "GPTOutput", "GRUSeq2Seq", "GRUSeq2SeqConfig",
           "KVCache", "PRESETS",
           "Seq2SeqConfig", "Seq2SeqOutput", "Seq2SeqTransformer", "load_encoder_weights"]

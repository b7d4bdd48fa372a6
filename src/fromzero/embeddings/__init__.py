"""Embeddings: vectors that place similar words and sentences near each other.

A word or a sentence becomes a list of numbers, learned so that things used in the same way end
up close together: the cosine between two vectors measures how alike two words are, and sums
and differences of vectors answer analogies ("man is to king as woman is to ?"). ``word2vec``
learns one vector per word from which words appear near which, with nothing but counting,
random sampling and a dot product.

- :mod:`~fromzero.embeddings.word2vec`  word vectors from scratch (skip-gram and CBOW)
- :mod:`~fromzero.embeddings.encoders`  sentence vectors: a real pretrained encoder (all-MiniLM-L6-v2),
  or a fromzero GPT's mean-pooled states
- :mod:`~fromzero.embeddings.index`     semantic search over your own documents
- :mod:`~fromzero.embeddings.rag`       retrieved chunks in front of a question (``fromzero chat --rag``)
- :mod:`~fromzero.embeddings.plots`     PCA / t-SNE pictures of vectors, a similarity heatmap
"""

from fromzero.lazy import lazy_exports

# Imported on first use (see fromzero.lazy), so `fromzero --help` does not pay for torch.
_EXPORTS = {
    "GPTMeanPoolEncoder": "encoders",
    "SentenceEncoder": "encoders",
    "load_encoder": "encoders",
    "WordVectors": "word2vec",
    "Word2VecConfig": "word2vec",
    "train_word2vec": "word2vec",
    "build_index": "index",
    "load_index": "index",
    "search_index": "index",
    "pca": "plots",
    "tsne": "plots",
    "plot_points": "plots",
    "plot_similarity": "plots",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

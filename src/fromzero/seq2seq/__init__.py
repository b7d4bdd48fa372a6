"""Sequence to sequence: the original Transformer (and the GRU it replaced) learning to translate.

Modules, in the order a run uses them (the models themselves are :mod:`fromzero.models.seq2seq` and
:mod:`fromzero.models.gru_seq2seq`; their decoding is :mod:`fromzero.generation.seq2seq`):

- :mod:`~fromzero.seq2seq.tasks`        the pairs: English–Hindi, copy, reverse, numbers, your files
- :mod:`~fromzero.seq2seq.data`         one vocabulary for both sides, padded teacher-forcing batches
- :mod:`~fromzero.seq2seq.model_files`  the three architectures, and a trained model's folder
- :mod:`~fromzero.seq2seq.train`        the run behind ``fromzero seq2seq train``
- :mod:`~fromzero.seq2seq.translate`    translate, score (BLEU, chrF, exact match), alignments
- :mod:`~fromzero.seq2seq.plots`        the cross-attention heatmap
"""

from fromzero.lazy import lazy_exports

_EXPORTS = {
    "Seq2SeqTrainConfig": "train",
    "Translator": "translate",
    "load_task": "tasks",
    "number_words": "tasks",
    "train_seq2seq": "train",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

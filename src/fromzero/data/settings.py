"""Defaults that the data functions and the ``fromzero data`` flags share.

They live in a module that imports nothing, so that building the command-line parser (which
shows them in ``--help``), or a module that only needs a constant, does not import the HTTP, HTML
and NumPy code that uses them.
"""

# Collected documents shorter than this are dropped: menus, captions and error pages, not prose.
DEFAULT_MIN_CHARS = 100
# Seconds to wait for a web server, and the most bytes read from one page.
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 5_000_000
# The field of a JSONL record (and the column of an hf: dataset) that holds its text.
DEFAULT_TEXT_FIELD = "text"
# Two blank lines end a document in the bundled corpora, in collected text files and between the
# documents of a character model's token shards.
DOCUMENT_SEPARATOR = "\n\n\n"

# word2vec's settings: the defaults of fromzero.embeddings.word2vec.Word2VecConfig (where each is
# explained), kept here so that `fromzero word2vec train --help` shows them without importing PyTorch.
WORD2VEC_DEFAULTS: dict[str, int | float | str] = {
    "mode": "skipgram", "dim": 100, "window": 5, "negatives": 5, "min_count": 5, "epochs": 5,
    "min_lr": 0.0001, "sample": 1e-3, "batch_size": 512, "seed": 0, "threads": 1,
}  # fmt: skip
# The starting learning rate of each mode (word2vec.c's): CBOW's averaged input takes larger steps.
WORD2VEC_LR: dict[str, float] = {"skipgram": 0.025, "cbow": 0.05}

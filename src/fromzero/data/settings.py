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

"""Errors a user can fix: bad paths, bad files, bad settings.

The library raises these instead of bare exceptions so the CLI can print a single clear line
(no traceback) and exit with status 2. Each also subclasses the matching built-in error, so
library users can keep catching ``ValueError`` or ``FileNotFoundError`` as usual.
"""


class FromzeroError(Exception):
    """Base class: something the user did or gave that we can explain in one line."""


class InputError(FromzeroError, ValueError):
    """An argument, setting or piece of data is invalid (wrong value, empty corpus, bad shape)."""


class MissingFileError(FromzeroError, FileNotFoundError):
    """A file or directory that is needed does not exist."""


class CorruptFileError(FromzeroError, ValueError):
    """A file exists but cannot be read as what it should be (truncated, wrong format, bad hash)."""


class OfflineError(FromzeroError, ConnectionError):
    """Something had to be downloaded and the network could not be reached."""

"""Where fromzero keeps things on disk.

``$FROMZERO_HOME`` (default ``~/.cache/fromzero``) holds downloaded files such as GPT-2's
vocabulary, so nothing is fetched twice and everything works offline once cached.
"""

from __future__ import annotations

import os
from pathlib import Path


def fromzero_home() -> Path:
    """The cache directory: ``$FROMZERO_HOME`` or ``~/.cache/fromzero`` (not created here)."""
    env = os.environ.get("FROMZERO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fromzero"

"""Safe file writing and reading.

Every output is written to a temporary file, then renamed into place: a crash, a full disk or
Ctrl-C half-way through therefore never leaves a truncated file behind with the final name;
readers either see the old file or the complete new one. Written files get the permissions
the umask gives any new file (``0644`` with the usual umask ``022``). Reading JSON explains a
missing or damaged file in one line instead of a parser traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from fromzero.errors import CorruptFileError, InputError, MissingFileError


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same directory; rename it to ``path`` only on success.

    Use it for writers that want a file name (``safetensors.torch.save_file``, ``plt.savefig``).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path.parent, *path.parent.parents) if p.is_file()), path.parent)
        raise InputError(f"cannot write {path}: {blocker} is a file, not a folder") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp makes the file private (0600); the output gets the mode of any new file instead.
        os.chmod(tmp_path, 0o666 & ~_umask())
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write JSON atomically (UTF-8, non-ASCII kept readable)."""
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike, *, hint: str = "") -> Any:
    """Parse a JSON file; a missing or unreadable one raises a one-line error (``hint`` says what to do)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist" + (f"; {hint}" if hint else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path} is not valid JSON ({err}); it is truncated or corrupt") from None


def prepare_output_dir(out: str | os.PathLike, remove: tuple[str, ...] = ()) -> Path:
    """Create ``out`` if needed, delete the entries named in ``remove`` (what an earlier run of the
    same command wrote: never anything else), and check that it can be written to, in one line."""
    out = Path(out)
    for name in remove:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise InputError(f"cannot write to output directory {out}: {err.strerror or err}") from None
    return out

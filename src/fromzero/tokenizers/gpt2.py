"""GPT-2's real vocabulary: find it in the cache, or download it once from OpenAI.

The files live in ``$FROMZERO_HOME/gpt2/`` (default ``~/.cache/fromzero/gpt2/``). Either
``encoder.json`` + ``vocab.bpe`` (OpenAI's original release) or ``gpt2.tiktoken`` (the same
vocabulary in tiktoken's format) is enough. Every file is checked against the sha256 that tiktoken
pins for it, so a truncated download or an edited file is caught instead of silently giving
different token ids.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fromzero.errors import CorruptFileError, OfflineError
from fromzero.files import write_bytes
from fromzero.paths import fromzero_home
from fromzero.tokenizers.vocab_files import read_gpt2_files, read_tiktoken_ranks

_BASE = "https://openaipublic.blob.core.windows.net/"


@dataclass(frozen=True)
class VocabFile:
    name: str
    url: str
    sha256: str


ENCODER_JSON = VocabFile(
    "encoder.json", _BASE + "gpt-2/encodings/main/encoder.json",
    "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
)
VOCAB_BPE = VocabFile(
    "vocab.bpe", _BASE + "gpt-2/encodings/main/vocab.bpe",
    "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
)
GPT2_TIKTOKEN = VocabFile(
    "gpt2.tiktoken", _BASE + "encodings/r50k_base.tiktoken",
    "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
)
GPT2_SPECIAL_TOKENS = {"<|endoftext|>": 50256}


def gpt2_dir() -> Path:
    """Where GPT-2's vocabulary files are looked for and downloaded to."""
    return fromzero_home() / "gpt2"


def load_gpt2_vocab(download: bool = True) -> tuple[dict[bytes, int], dict[str, int]]:
    """GPT-2's ``(ranks, special_tokens)`` from the cache, downloading the files when absent."""
    folder = gpt2_dir()
    if (folder / GPT2_TIKTOKEN.name).is_file():
        return read_tiktoken_ranks(verified(folder, GPT2_TIKTOKEN)), dict(GPT2_SPECIAL_TOKENS)
    for file in (ENCODER_JSON, VOCAB_BPE):
        if not (folder / file.name).is_file():
            if not download:
                raise OfflineError(_missing_message(folder))
            fetch(file, folder)
    return read_gpt2_files(verified(folder, ENCODER_JSON), verified(folder, VOCAB_BPE))


def verified(folder: Path, file: VocabFile) -> Path:
    """Return ``folder/file.name`` after checking its sha256."""
    path = folder / file.name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != file.sha256:
        raise CorruptFileError(
            f"{path} has sha256 {digest[:12]}..., expected {file.sha256[:12]}... "
            f"(truncated or not GPT-2's file); delete it to download it again"
        )
    return path


def fetch(file: VocabFile, folder: Path) -> Path:
    """Download ``file`` into ``folder``, checking its sha256 before it gets its final name."""
    try:
        with urllib.request.urlopen(file.url, timeout=60) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as err:
        raise OfflineError(f"cannot download {file.url} ({err}). {_missing_message(folder)}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != file.sha256:
        raise CorruptFileError(f"download of {file.url} has sha256 {digest[:12]}..., expected {file.sha256[:12]}...")
    write_bytes(folder / file.name, data)
    return folder / file.name


def _missing_message(folder: Path) -> str:
    return (
        f"GPT-2's vocabulary is not cached: put {ENCODER_JSON.name} + {VOCAB_BPE.name} "
        f"(or {GPT2_TIKTOKEN.name}) into {folder}/, from {ENCODER_JSON.url} and {VOCAB_BPE.url}"
    )

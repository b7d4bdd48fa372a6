"""``hf:`` sources: Hugging Face datasets, one document per row of a text column.

Reading them needs the ``datasets`` package (``pip install "fromzero[hf]"``)::

    hf:roneneldan/TinyStories                       the train split, column "text"
    hf:roneneldan/TinyStories:validation            another split ("train[:10%]" slices it)
    hf:Salesforce/wikitext:config=wikitext-2-raw-v1 a dataset with several configurations
    hf:./my_data:column=story                       a local folder (train.jsonl, *.parquet...)
    hf:./stories.parquet                            one local data file, read as the train split
    hf:HuggingFaceFW/fineweb-edu:rows=100000        only the first rows, streamed: nothing more
                                                    is downloaded (for datasets too big to fetch)

The column is the source's ``column=``, else the command's ``--text-field`` (default ``text``),
the same name a JSONL file's records are read with (:mod:`fromzero.data.loading`).
A folder written by ``Dataset.save_to_disk`` is read with ``datasets.load_from_disk``.
Hub datasets are downloaded whole into the Hugging Face cache, then read from it offline.

Offline, ``huggingface_hub`` retries every failed connection five times with back-off (25 s of
"Retrying in 8s" before any error). So before reading a Hub dataset we send the Hub one quick
request; if it gets no answer, or ``HF_HUB_OFFLINE`` is set, the dataset is read in offline mode
at once: from the cache if it is there, else with one clear :class:`OfflineError`.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from fromzero.data.settings import DEFAULT_TEXT_FIELD
from fromzero.errors import CorruptFileError, FromzeroError, InputError, MissingFileError, OfflineError

if TYPE_CHECKING:
    import datasets

HF_PREFIX = "hf:"
HF_SYNTAX = "hf:NAME[:SPLIT][:column=NAME][:config=NAME][:rows=N]"
# Fields of an hf: source are separated by colons, except colons inside a slice: "train[:10%]".
_HF_FIELD_BREAK = re.compile(r":(?![^\[]*\])")
# Seconds the one request that tells whether the Hub can be reached may take.
HUB_PROBE_TIMEOUT = 5.0


def is_hf_source(source: object) -> bool:
    """True for ``"hf:NAME..."`` strings, the Hugging Face datasets this module reads."""
    return isinstance(source, str) and source.startswith(HF_PREFIX)


@dataclass(frozen=True)
class HfSource:
    """The parts of an ``hf:`` source; ``split`` is None when the source names none."""

    name: str
    split: str | None = None
    column: str = DEFAULT_TEXT_FIELD
    config: str | None = None
    rows: int | None = None  # read only the first rows, streamed

    @property
    def local(self) -> Path | None:
        """The local folder or file the source names, or None for a Hub dataset."""
        path = Path(self.name).expanduser()
        if self.name.startswith((".", "/", "~")) or path.exists():
            return path
        return None


def parse_hf_source(source: str, default_column: str = DEFAULT_TEXT_FIELD) -> HfSource:
    """Parse ``hf:NAME[:SPLIT][:column=NAME][:config=NAME][:rows=N]``; the column defaults to
    ``default_column`` (a command's ``--text-field``)."""
    name, *fields = _HF_FIELD_BREAK.split(source.removeprefix(HF_PREFIX))
    options: dict[str, str] = {}
    for text in fields:
        key, equals, value = text.partition("=")
        if not equals:  # a bare field is the split
            key, value = "split", text
        if key not in ("split", "column", "config", "rows") or key in options or not value:
            raise InputError(f"{source!r} does not match {HF_SYNTAX}")
        options[key] = value
    if not name:
        raise InputError(f"{source!r} names no dataset: write {HF_SYNTAX}")
    rows = options.pop("rows", None)
    if rows is not None and not (rows.isdigit() and int(rows) > 0):
        raise InputError(f"rows={rows} in {source!r} must be a positive whole number")
    options.setdefault("column", default_column)
    return HfSource(name, **options, rows=None if rows is None else int(rows))


def _one_line(err: BaseException) -> str:
    """The message of a library error, whose lines we join: ours are always one line."""
    return " ".join(str(err).split())


def _hub_unreachable() -> str | None:
    """Why one quick request to the Hub got no answer, or None when it answered."""
    from huggingface_hub import constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT)
    except Exception as err:  # whatever the HTTP library raised: no answer means no Hub now
        return _one_line(err) or type(err).__name__
    return None


def _offline_reason(hf: HfSource) -> str | None:
    """Why a Hub dataset must be read offline (HF_HUB_OFFLINE, or no answer), or None."""
    import datasets
    from huggingface_hub import constants

    if hf.local is not None:
        return None
    if datasets.config.HF_HUB_OFFLINE or constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    error = _hub_unreachable()
    return None if error is None else f"the Hugging Face Hub cannot be reached ({error})"


@contextlib.contextmanager
def _offline_mode() -> Iterator[None]:
    """Hugging Face's offline mode while reading: the cache only, no network, no retries."""
    import datasets
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _saved_split(saved: datasets.Dataset | datasets.DatasetDict, hf: HfSource) -> datasets.Dataset:
    """The chosen split of a ``save_to_disk`` folder: a saved Dataset is one split already."""
    from datasets import DatasetDict

    if not isinstance(saved, DatasetDict):
        if hf.split:
            raise InputError(f"{hf.name} holds a single saved split; leave out :{hf.split}")
        rows = saved
    else:
        split = hf.split or "train"
        if split not in saved:
            raise InputError(f"{hf.name} has no split {split!r}; its splits are {', '.join(saved)}")
        rows = saved[split]
    return rows.select(range(min(hf.rows, len(rows)))) if hf.rows else rows


def _load_hf_split(hf: HfSource) -> datasets.Dataset | datasets.IterableDataset:
    """One split of a local or Hub dataset (its first ``hf.rows`` rows, streamed, when given)."""
    import datasets

    local = hf.local
    if local is not None and not local.exists():
        raise MissingFileError(f"{local} does not exist")
    if local is not None and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
        return _saved_split(datasets.load_from_disk(str(local)), hf)
    if local is not None and local.is_file():  # one data file (.jsonl, .parquet...) is a dataset with a train split
        path, data_files = str(local.parent), local.name
    else:
        path, data_files = (str(local) if local is not None else hf.name), None
    split = hf.split or "train"
    if hf.rows:
        return datasets.load_dataset(path, hf.config, data_files=data_files, split=split, streaming=True).take(hf.rows)
    return datasets.load_dataset(path, hf.config, data_files=data_files, split=split)


@contextlib.contextmanager
def _hf_errors(hf: HfSource, offline: str | None) -> Iterator[None]:
    """Turn the errors of ``datasets`` into one-line fromzero errors (a streamed dataset raises
    them while it is read, so reading happens inside this too); ``offline`` says why the Hub
    was not asked."""
    import datasets

    try:
        yield
    except FromzeroError:  # ours already say what is wrong (some are ValueErrors too)
        raise
    except ConnectionError as err:  # datasets' own error when the Hub is offline or unreachable
        why = f"{offline}, and it is not in the Hugging Face cache" if offline else _one_line(err)
        raise OfflineError(
            f"cannot download dataset {hf.name!r}: {why}; "
            "connect to the network with HF_HUB_OFFLINE unset, or give a local folder as hf:./FOLDER"
        ) from None
    except FileNotFoundError as err:
        raise MissingFileError(f"dataset {hf.name!r}: {_one_line(err)}") from None
    except ValueError as err:  # an unknown split or configuration
        raise InputError(f"dataset {hf.name!r}: {_one_line(err)} (write {HF_SYNTAX})") from None
    except datasets.exceptions.DatasetGenerationError as err:
        raise CorruptFileError(f"dataset {hf.name!r} cannot be read: {_one_line(err.__cause__ or err)}") from None


def load_hf_documents(source: str, text_field: str = DEFAULT_TEXT_FIELD) -> list[str]:
    """The non-empty values of the text column of an ``hf:`` dataset, stripped, in order.

    The column is the source's ``column=``, else ``text_field``.
    """
    hf = parse_hf_source(source, text_field)
    try:
        import datasets
    except ImportError:
        raise InputError(
            'hf: sources need the `datasets` package: pip install datasets (or the hf extra: pip install "fromzero[hf]")'
        ) from None
    offline = _offline_reason(hf)
    with _hf_errors(hf, offline), _offline_mode() if offline else contextlib.nullcontext():
        rows = _load_hf_split(hf)
        if rows.features is None:  # a streamed dataset whose columns are only known once read
            rows = datasets.Dataset.from_list(list(rows))
        return _text_column(rows, hf)


def _text_column(rows: datasets.Dataset | datasets.IterableDataset, hf: HfSource) -> list[str]:
    """The non-empty texts of the chosen column, after checking that it exists and holds text."""
    import datasets

    kinds = {name: getattr(feature, "dtype", type(feature).__name__) for name, feature in rows.features.items()}
    if hf.column not in kinds:
        columns = ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
        raise InputError(
            f"dataset {hf.name!r} has no {hf.column!r} column; its columns are {columns}: "
            "choose one with --text-field NAME or by adding :column=NAME to the source"
        )
    if kinds[hf.column] not in ("string", "large_string"):
        raise InputError(f"column {hf.column!r} of dataset {hf.name!r} holds {kinds[hf.column]}, not text")
    texts = rows[hf.column] if isinstance(rows, datasets.Dataset) else (row[hf.column] for row in rows)
    return [text.strip() for text in texts if text and text.strip()]

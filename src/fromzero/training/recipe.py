"""Recipes: a run's settings saved in a TOML, YAML or JSON file (``fromzero train --config``).

A recipe holds any subset of :class:`~fromzero.training.config.TrainConfig`'s fields under the
same names (``batch_size``; ``batch-size`` works too). Each value is checked against the field's
type, as argparse checks a flag, so a typo such as ``max_steps = "twenty"`` is reported with the
field's name instead of failing somewhere inside the run. Numbers written as text are read like
the flag would read them: YAML, for one, reads ``lr: 3e-3`` as the text ``"3e-3"``.
"""

from __future__ import annotations

import contextlib
import json
import typing
from pathlib import Path
from typing import Any

import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.training.config import TrainConfig

SUFFIXES = (".toml", ".yaml", ".yml", ".json")
FIELD_TYPES = typing.get_type_hints(TrainConfig)  # "max_steps" -> int, "min_lr" -> float | None
TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe into a dict of TrainConfig fields (unknown keys and wrong types refused)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"recipe {path} is a folder; give a recipe file ({', '.join(SUFFIXES)})")
    if not path.is_file():
        raise MissingFileError(f"recipe file {path} does not exist")
    if path.suffix not in SUFFIXES:
        raise InputError(f"recipe {path} must end in {', '.join(SUFFIXES)}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            values = tomllib.loads(text)
        elif path.suffix == ".json":
            values = json.loads(text)
        else:
            values = yaml.safe_load(text) or {}
    except Exception as err:  # each parser has its own error class
        raise CorruptFileError(f"cannot parse recipe {path}: {err}") from err
    if not isinstance(values, dict):
        raise CorruptFileError(f"recipe {path} must be a table of settings, not {type(values).__name__}")
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(values) - set(TrainConfig.field_names()))
    if unknown:
        raise InputError(f"recipe {path} has unknown settings: {', '.join(unknown)}")
    return {name: _checked(name, value, path) for name, value in values.items()}


def _checked(name: str, value: Any, path: Path) -> Any:
    """``value`` as field ``name`` takes it, or an InputError naming the field and its type."""
    kinds = typing.get_args(FIELD_TYPES[name]) or (FIELD_TYPES[name],)
    optional = type(None) in kinds
    kind = next(k for k in kinds if k is not type(None))
    if value is None and optional:
        return None
    if isinstance(value, bool) == (kind is bool):  # True is an int to Python, not to a recipe
        if isinstance(value, kind):
            return value
        if kind is float and isinstance(value, int):
            return float(value)
        if kind in (int, float) and isinstance(value, str):
            with contextlib.suppress(ValueError):
                return kind(value)
    expected = TYPE_NAMES[kind] + (" (or null for the default)" if optional else "")
    raise InputError(f"recipe {path}: {name} must be {expected}, got {value!r}")

"""Training history: one record of metrics per epoch, saved as JSON so curves can be redrawn."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fromzero.errors import CorruptFileError, MissingFileError
from fromzero.files import write_json


@dataclass
class History:
    """``records[i]`` holds the metrics of epoch ``i + 1``, e.g. ``{"epoch": 1, "train_loss": 2.3}``."""

    records: list[dict] = field(default_factory=list)

    def add(self, **metrics: float) -> None:
        self.records.append({"epoch": len(self.records) + 1, **metrics})

    def series(self, name: str) -> list[float]:
        """The values of one metric, in epoch order (epochs without it are skipped)."""
        return [r[name] for r in self.records if r.get(name) is not None]

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    def save(self, path: str | Path) -> Path:
        write_json(path, {"records": self.records})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> History:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"no training history at {path}")
        try:
            return cls(json.loads(path.read_text(encoding="utf-8"))["records"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CorruptFileError(f"{path} is not a training history: {err!r}") from err

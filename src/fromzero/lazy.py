"""Package faces that import their modules on first use.

``from fromzero.data import load_documents`` should work, yet ``fromzero --help`` must not pay for
importing BeautifulSoup, NumPy or torch just because a command module touched the package. A
package ``__init__`` therefore lists its names and where they live, and Python's module-level
``__getattr__`` (PEP 562) imports a module only when one of its names is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``; ``exports`` maps each name to its module.

    A name may not be the name of its own module (``collect`` in ``collect.py``): once the module
    is imported, Python sets the package attribute of that name to the module, hiding the function.
    """
    clashes = [name for name, module in exports.items() if name == module]
    if clashes:
        raise ValueError(f"{package}: {clashes} share their module's name; import them from the module")

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__

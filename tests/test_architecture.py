"""The shape of the package: layers that only point down, no import circles, an instant ``--help``.

The import graph is read from the source with ``ast`` (every ``import`` anywhere in a module, also
inside functions), so the rules hold for lazy imports too. The layers are those drawn in the
README's layout section.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fromzero"

# Lower numbers are lower layers; a module may import its own layer or lower ones, never higher.
LAYERS = {
    "errors": 0, "files": 0, "paths": 0, "console": 0, "lazy": 0, "devices": 0, "machine": 0, "tuning": 0,
    "nn": 1, "kernels": 1,
    "models": 2, "tokenizers": 2,
    "generation": 3, "data": 3,
    "training": 4, "classic": 4,
    "finetune": 5, "evaluate": 5, "embeddings": 5, "seq2seq": 5,
    "chat": 6, "serve": 6,
    "commands": 7, "lessons": 7,
    "cli": 8, "__main__": 8, "__init__": 8,
}  # fmt: skip
HEAVY = ("torch", "numpy", "bs4", "transformers", "matplotlib")


def _module_name(path: Path) -> str:
    parts = ["fromzero", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 2 else parts)


def _imports(path: Path) -> set[str]:
    """The fromzero modules ``path`` imports (``from fromzero.x import y`` counts y if it is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("fromzero"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fromzero"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return LAYERS[top]


def test_every_package_has_a_layer():
    tops = {_module_name(p).split(".")[1] for p in SRC.rglob("*.py") if p.parent != SRC or p.stem != "__init__"}
    assert tops <= set(LAYERS), f"give these a layer in LAYERS (and the README): {sorted(tops - set(LAYERS))}"


def test_imports_only_point_down():
    upward = sorted(
        f"{a} -> {b}" for a, targets in _graph().items() for b in targets if _layer(b) > _layer(a)
    )
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_circles():
    graph = _graph()
    circles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_library_never_imports_the_commands():
    offenders = sorted(
        f"{a} -> {b}"
        for a, targets in _graph().items()
        if not a.startswith(("fromzero.commands", "fromzero.cli", "fromzero.__main__"))
        for b in targets
        if b.startswith(("fromzero.commands", "fromzero.cli"))
    )
    assert not offenders, offenders


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["generate", "--help"], ["data", "prepare", "--help"]])
def test_help_imports_no_heavy_library(argv):
    code = (
        "import sys\n"
        "from fromzero.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-500:]

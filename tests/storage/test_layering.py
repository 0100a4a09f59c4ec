"""Data flows one way: no module under ``storage/`` imports ``battleground.experiment`` (nor stats)."""

from __future__ import annotations

import ast
from pathlib import Path

import battleground.storage

STORAGE = Path(battleground.storage.__file__).parent
FORBIDDEN = ("battleground.experiment", "battleground.stats", "battleground.web", "battleground.cli")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` or ``from … import`` names, anywhere in the file (lazy ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_storage_imports_nothing_above_it() -> None:
    files = sorted(STORAGE.rglob("*.py"))
    assert len(files) >= 10  # the walk really saw the package (migrations included)
    bad = [f"{p.relative_to(STORAGE)}:{line} imports {name}" for p in files for line, name in _imports(p)
           if name.startswith(FORBIDDEN)]
    assert bad == []


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from battleground.experiment.register import resolve_client\n")
    assert (2, "battleground.experiment.register") in _imports(sample)

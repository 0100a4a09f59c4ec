"""The examples in docstrings run and print what they say (River's habit: docs that cannot rot)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import battleground

SRC = Path(battleground.__file__).parent


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        if "migrations" in rel.parts or "conf" in rel.parts:
            continue
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return names


MODULES = _modules_with_examples()


def test_examples_are_found() -> None:
    assert "battleground.experiment.events" in MODULES and len(MODULES) >= 15


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"

"""Data flows one way (settings → storage → sums → stats → decision → views): a lower layer never imports
a higher one. The rules are checked on every module's imports (lazy ones too), parsed with ``ast``; the
storage rule itself lives in ``tests/storage/test_layering.py``, whose import walker this reuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.storage.test_layering import _imports

import battleground

PACKAGE = Path(battleground.__file__).parent
CORE = ("settings.py", "errors.py", "_time.py", "_redact.py", "_html.py", "_http.py", "_xxh64.py", "_contract.py")
ABOVE_CORE = ("battleground.storage", "battleground.stats", "battleground.experiment", "battleground.web",
              "battleground.cli")
# (files of a layer, the packages it must never import)
RULES = {
    "core helpers": ([PACKAGE / name for name in CORE], ABOVE_CORE),
    "stats/": (sorted((PACKAGE / "stats").rglob("*.py")), ("battleground.storage", "battleground.experiment",
                                                          "battleground.web", "battleground.cli")),
    "experiment/": (sorted((PACKAGE / "experiment").rglob("*.py")), ("battleground.web", "battleground.cli")),
    "web/": (sorted((PACKAGE / "web").rglob("*.py")), ("battleground.cli",)),
}


def _violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{p.name if not p.is_relative_to(PACKAGE) else p.relative_to(PACKAGE)}:{line} imports {name}" for p in files for line, name in _imports(p)
            if any(name == f or name.startswith(f"{f}.") for f in forbidden)]


@pytest.mark.parametrize("layer", list(RULES))
def test_no_layer_imports_a_higher_one(layer: str) -> None:
    files, forbidden = RULES[layer]
    assert len(files) >= 5 and all(p.is_file() for p in files)  # the walk really saw the layer
    assert _violations(files, forbidden) == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import battleground.web\ndef f():\n    from battleground.cli._common import console\n")
    assert _violations([sample], ("battleground.web", "battleground.cli")) != []
    assert len(_violations([sample], ("battleground.cli",))) == 2  # the module and the imported name

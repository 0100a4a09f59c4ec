"""Run the benchmarks: ``python -m benchmarks`` (all areas) or ``python -m benchmarks events ope``.

Each area is a module ``benchmarks/bench_<area>.py`` with a ``main(argv)`` function that prints its
figures (and ratios against its baseline, measured in the same run).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _areas() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name[len("bench_") :] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    chosen = argv or _areas()
    unknown = sorted(set(chosen) - set(_areas()))
    if unknown:
        print(f"unknown benchmark area(s) {unknown}; choose from {_areas()}", file=sys.stderr)
        return 2
    for area in chosen:
        print(f"\n=== {area} ===", flush=True)
        importlib.import_module(f"benchmarks.bench_{area}").main([])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

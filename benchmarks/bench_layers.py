"""Assignment with layers and a holdout (issue 17 §Assignment): ``Assigner.assign_many`` of a layered
experiment behind a holdout (three XXH64 passes: holdout bucket, layer bucket, variant) against the
plain ``assign_variants`` of the same experiment without them (one pass), in the same run, on the same
ids; and the answers checked against the per-id ``Assigner.assign``.

Run: ``python -m benchmarks layers`` (``BATTLEGROUND_BENCH_QUICK=1``: 1M ids instead of 10M).
"""

from __future__ import annotations

import os

import numpy as np

from benchmarks._common import best_of


def bench_layers(n: int) -> None:
    from battleground.experiment._records import (
        EndConditions,
        ExperimentRecord,
        HoldoutRef,
        VariantRecord,
    )
    from battleground.experiment.assign import Assigner, assign_variants

    variants = (VariantRecord("control", 0.5, True), VariantRecord("treatment", 0.5, False))
    gated = ExperimentRecord(1, "bench", "running", "bench", 1.0, variants, (), EndConditions(),
                             layer="checkout", layer_range=(2500, 7500),
                             holdout=HoldoutRef(2, "hold", "hold-bench", 500))
    ids = np.arange(n, dtype=np.int64) * 7919 + 10**9
    t_plain, plain = best_of(lambda: assign_variants(ids, salt="bench", variants=["control", "treatment"],
                                                   weights=[0.5, 0.5]))
    assigner = Assigner(gated)
    t_gated, out = best_of(lambda: assigner.assign_many(ids))
    m = min(n, 20_000)
    assert out[:m].tolist() == [assigner.assign(int(i)) for i in ids[:m]]
    inside = out != None  # noqa: E711
    assert (out[inside] == plain[inside]).all()  # inside its range the variant is the plain one
    print(
        f"layers: Assigner.assign_many (holdout 5 % + layer range 50 %) {n:,} integer ids {t_gated:.3f} s = "
        f"{n / t_gated / 1e6:.1f}M ids/s; plain assign_variants {t_plain:.3f} s = {n / t_plain / 1e6:.1f}M ids/s "
        f"({t_gated / t_plain:.2f}x its time); {inside.mean():.1%} assigned; same answers as per-id: True",
        flush=True,
    )


def main(argv: list[str]) -> None:
    quick = os.environ.get("BATTLEGROUND_BENCH_QUICK") == "1"
    bench_layers(1_000_000 if quick else 10_000_000)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

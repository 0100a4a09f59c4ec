"""Layers (mutually exclusive experiments) and project holdouts: the documented bucket hash and its test
vector, disjoint units over 100k ids, proportions within a range, holdout units never assigned, and the
registry's rules (overlapping ranges, ranges outside [0, 10000), bad holdout fractions) on SQLite and
PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash
from scipy import stats

from battleground.experiment._records import (
    EndConditions,
    ExperimentRecord,
    HoldoutRef,
    RegistryError,
    RegistryRuleError,
    VariantRecord,
)
from battleground.experiment.assign import (
    Assigner,
    layer_bucket_one,
    layer_buckets,
    layer_namespace,
)
from battleground.experiment.register import Registry
from battleground.settings import Settings

# The cross-language test vector of docs/ab-testing.md ("Layers and holdouts"): experiment salt
# "checkout-2022" (control/treatment 50/50), layer "checkout" owning buckets [0, 5000), behind a holdout
# with salt "holdout-2026" holding out buckets [0, 500). Columns: unit, XXH64 of b"layer:checkout:<unit>",
# its layer bucket, XXH64 of b"holdout-2026:<unit>", its holdout bucket, XXH64 of b"checkout-2022:<unit>",
# the variant (None: not exposed) and why not.
VECTOR = [
    ("42", 0x899471AA05BCFDA8, 5374, 0xECA5591FE7F7FCB9, 9243, 0xE1F7129B2E26168A, None, "layer"),
    ("alice", 0x64A37C0C60BABB6D, 3931, 0x4BE14C2FECEBBEFD, 2964, 0x11E08D6F847DD5F9, "control", None),
    ("7", 0x4FEEA17DA42FF613, 3122, 0x6F8872E93D6FA602, 4356, 0x8F0D7A551174E761, "treatment", None),
    ("user-66", 0x612EDA9043453BD2, 3796, 0x04EC56389BCED144, 192, 0x492EFDA17FEAD04B, None, "holdout"),
    ("사용자-1", 0x42866D3E7925CC38, 2598, 0xFC5991392E0EDE3B, 9857, 0x61B6CB367EEFBAB7, "control", None),
]
VARIANTS = (VariantRecord("control", 0.5, True), VariantRecord("treatment", 0.5, False))


def _record(**changes: object) -> ExperimentRecord:
    base = ExperimentRecord(1, "demo", "running", "checkout-2022", 1.0, VARIANTS, (), EndConditions(),
                            layer="checkout", layer_range=(0, 5000),
                            holdout=HoldoutRef(9, "hold", "holdout-2026", 500))
    from dataclasses import replace

    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(("unit", "g", "layer_b", "hg", "hold_b", "h", "variant", "why"), VECTOR)
def test_the_documented_test_vector(unit: str, g: int, layer_b: int, hg: int, hold_b: int, h: int,
                                    variant: str | None, why: str | None) -> None:
    # the byte recipe written out with the reference xxhash package
    assert xxhash.xxh64_intdigest(f"layer:checkout:{unit}".encode()) == g
    assert xxhash.xxh64_intdigest(f"holdout-2026:{unit}".encode()) == hg
    assert xxhash.xxh64_intdigest(f"checkout-2022:{unit}".encode()) == h
    assert ((g >> 32) * 10000) >> 32 == layer_b
    assert ((hg >> 32) * 10000) >> 32 == hold_b
    # ... and by the library, one at a time and vectorised
    assert layer_bucket_one(unit, layer_namespace("checkout")) == layer_b
    assert layer_buckets([unit], "holdout-2026").tolist() == [hold_b]
    assigner = Assigner(_record())
    assert assigner.assign(unit) == variant
    assert assigner.exclusion(unit) == why
    assert assigner.assign_many([unit]).tolist() == [variant]


def test_bucket_is_floor_of_the_high_bits_share() -> None:
    ids = np.arange(50_000, dtype=np.int64)
    b = layer_buckets(ids, "layer:x")
    from battleground.experiment.assign import hash_ids

    high = (hash_ids(ids, "layer:x") >> np.uint64(32)).astype(np.float64)
    assert np.array_equal(b, np.floor(high / 2**32 * 10000).astype(np.int64))
    assert b.min() >= 0 and b.max() <= 9999
    assert [layer_bucket_one(int(i), "layer:x") for i in ids[:200]] == b[:200].tolist()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest) -> Registry:
    settings: Settings = request.getfixturevalue("settings" if request.param == "sqlite" else "postgres_settings")
    return Registry(settings.registry_url)


def test_no_unit_in_two_experiments_of_a_layer_over_100k_ids(registry: Registry) -> None:
    a = registry.create_experiment("a", layer="checkout", layer_range=(0, 3000))
    b = registry.create_experiment("b", layer="checkout", layer_buckets=5000, variants=["c", "t1", "t2"])
    c = registry.create_experiment("c", layer="checkout", layer_buckets=2000, traffic=0.5)
    assert (b.layer_range, c.layer_range) == ((3000, 8000), (8000, 10000))
    other = registry.create_experiment("other-layer", layer="search", layer_range=(0, 10000))
    for e in (a, b, c, other):
        registry.start(e.id)
    ids = np.arange(100_000, dtype=np.int64)
    assigned = np.array([Assigner(registry.get(e.id)).assign_many(ids) != None for e in (a, b, c)])  # noqa: E711
    assert assigned.sum(axis=0).max() == 1  # never two experiments of the layer
    # each experiment sees its share of the layer (c only half of it: traffic 0.5)
    np.testing.assert_allclose(assigned.sum(axis=1) / ids.size, [0.30, 0.50, 0.10], atol=0.006)
    # another layer is independent: about 30 % of its units are in a
    in_other = Assigner(registry.get(other.id)).assign_many(ids) != None  # noqa: E711
    assert abs((in_other & assigned[0]).mean() - 0.30) < 0.006


def test_proportions_within_the_range_follow_the_weights() -> None:
    exp = _record(holdout=None, layer_range=(2000, 7000), variants=(
        VariantRecord("control", 0.5, True), VariantRecord("b", 0.3, False), VariantRecord("c", 0.2, False)))
    ids = np.arange(200_000, dtype=np.int64)
    got = Assigner(exp).assign_many(ids)
    inside = got != None  # noqa: E711
    assert abs(inside.mean() - 0.5) < 0.005
    counts = np.array([(got == v).sum() for v in ("control", "b", "c")])
    chi2 = stats.chisquare(counts, counts.sum() * np.array([0.5, 0.3, 0.2]))
    assert chi2.pvalue > 0.01, (counts, chi2)
    # the variant is independent of the bucket: the split is the same in each half of the range
    b = layer_buckets(ids, "layer:checkout")
    low = np.array([(got[b < 4500] == v).sum() for v in ("control", "b", "c")])
    assert stats.chi2_contingency(np.vstack([low, counts - low])).pvalue > 0.01
    assert [Assigner(exp).assign(int(i)) for i in ids[:300]] == got[:300].tolist()


def test_holdout_units_are_never_assigned(registry: Registry) -> None:
    hold = registry.create_holdout("hold-q1", fraction=0.1, project="shop",
                                   metrics=[{"name": "conv", "kind": "proportion", "numerator": "purchase"}])
    assert hold.kind == "holdout" and hold.layer_range == (0, 1000) and hold.holdout_fraction == 0.1
    assert [(v.name, v.weight, v.is_control) for v in hold.variants] == [("holdout", 0.1, True), ("shipped", 0.9, False)]
    registry.start(hold.id)
    exps = [registry.start(registry.create_experiment(f"e{i}", project="shop", **kw).id) for i, kw in enumerate([
        {}, {"layer": "checkout", "layer_range": (0, 5000)}, {"layer": "checkout", "layer_range": (5000, 10000)},
    ])]
    outside = registry.start(registry.create_experiment("elsewhere").id)  # project "default"
    assert all(e.holdout is not None and e.holdout.id == hold.id for e in exps) and outside.holdout is None
    assert [e.name for e in registry.holdout_of(hold.id)] == ["e0", "e1", "e2"]
    ids = np.array([f"u{i}" for i in range(100_000)], dtype=object)
    held = Assigner(registry.get(hold.id)).assign_many(ids) == "holdout"
    assert abs(held.mean() - 0.1) < 0.004
    for e in exps:
        got = Assigner(registry.get(e.id)).assign_many(ids)
        assert (got[held] == None).all()  # noqa: E711
        assert (got[~held] != None).mean() > (0.99 if e.layer is None else 0.45)  # noqa: E711
    assert {Assigner(exps[0]).exclusion(u) for u in ids[held][:50]} == {"holdout"}
    # the others in the project still get a variant everywhere but one experiment of each layer slot
    assert (Assigner(registry.get(outside.id)).assign_many(ids[held]) != None).all()  # noqa: E711
    # once the holdout stops, new experiments are not behind it; those behind it keep it
    registry.stop(hold.id, "period over")
    later = registry.start(registry.create_experiment("later", project="shop").id)
    assert later.holdout is None and registry.get(exps[0].id).holdout is not None


def test_a_holdout_starts_alone_and_before_the_experiments(registry: Registry) -> None:
    registry.start(registry.create_experiment("running-one", project="p").id)
    hold = registry.create_holdout("h", fraction=0.05, project="p")
    with pytest.raises(RegistryRuleError, match="running experiments \\('running-one'\\)"):
        registry.start(hold.id)
    registry.start(registry.create_holdout("h-other", fraction=0.05, project="q").id)
    with pytest.raises(RegistryRuleError, match="already has running holdout 'h-other'"):
        registry.start(registry.create_holdout("h-second", fraction=0.05, project="q").id)


def test_overlapping_ranges_of_running_experiments_are_refused(registry: Registry) -> None:
    a = registry.create_experiment("a", layer="checkout", layer_range="0-5000")
    b = registry.create_experiment("b", layer="checkout", layer_range=(4000, 6000))  # drafts may overlap
    registry.start(a.id)
    with pytest.raises(RegistryRuleError) as err:
        registry.start(b.id)
    message = str(err.value)
    assert "layer 'checkout'" in message and "[4000, 6000)" in message and "[0, 5000)" in message
    assert "running experiment 'a'" in message and "[5000, 10000)" in message  # the free range as the fix
    assert registry.get(b.id).status == "draft"
    with pytest.raises(RegistryRuleError, match="overlaps \\[0, 5000\\) of running experiment 'a'"):
        registry.create_experiment("c", layer="checkout", layer_range=(4999, 5001))
    registry.create_experiment("d", layer="other", layer_range=(0, 5000))  # other layers are free
    registry.stop(a.id, "done")
    assert registry.start(b.id).status == "running"  # a's range is free again


@pytest.mark.parametrize("bad", [(0, 10001), (-1, 5), (5, 5), (7000, 3000), "0-", (0.5, 10), "a-b", (1, 2, 3)])
def test_ranges_outside_the_layer_are_refused(registry: Registry, bad: object) -> None:
    with pytest.raises(RegistryRuleError, match="layer range"):
        registry.create_experiment("x", layer="checkout", layer_range=bad)


@pytest.mark.parametrize("bad", [1.5, 0, 1, -0.1, 0.00005, float("nan"), "0.1", True])
def test_bad_holdout_fractions_are_refused(registry: Registry, bad: object) -> None:
    with pytest.raises(RegistryError, match="holdout fraction"):
        registry.create_holdout("h", fraction=bad)  # type: ignore[arg-type]
    assert registry.list() == []


def test_layer_inputs_that_do_not_fit(registry: Registry) -> None:
    with pytest.raises(RegistryRuleError, match="name the layer"):
        registry.create_experiment("x", layer_range=(0, 10))
    with pytest.raises(RegistryRuleError, match="not both and not neither"):
        registry.create_experiment("x", layer="l")
    with pytest.raises(RegistryRuleError, match="not both"):
        registry.create_experiment("x", layer="l", layer_range=(0, 10), layer_buckets=10)
    with pytest.raises(RegistryRuleError, match="layer buckets"):
        registry.create_experiment("x", layer="l", layer_buckets=0)
    registry.create_experiment("big", layer="l", layer_buckets=9000)
    with pytest.raises(RegistryRuleError, match=r"no 2000 free contiguous buckets \(free: \[9000, 10000\)\)"):
        registry.create_experiment("x", layer="l", layer_buckets=2000)


def test_a_draft_moves_between_layers_and_ranges(registry: Registry) -> None:
    running = registry.start(registry.create_experiment("running", layer="checkout", layer_range=(0, 5000)).id)
    draft = registry.create_experiment("draft", layer="checkout", layer_range=(5000, 10000))
    with pytest.raises(RegistryRuleError, match="overlaps \\[0, 5000\\) of running experiment 'running'"):
        registry.update(draft.id, layer_range=(4000, 6000))
    moved = registry.update(draft.id, layer="search", layer_range="0-2000", project="shop")
    assert (moved.layer, moved.layer_range, moved.project) == ("search", (0, 2000), "shop")
    assert registry.update(draft.id, layer=None).layer_range is None
    with pytest.raises(RegistryRuleError, match="layer frozen once running"):
        registry.update(running.id, layer="other")
    assert [e.action for e in registry.audit_log(draft.id)] == ["create", "edit", "edit"]

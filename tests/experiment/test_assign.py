"""Assignment: the documented hash, pinned answers, vectorised == single, weights, traffic, exposures."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xxhash

from battleground.experiment._records import EndConditions, ExperimentRecord, VariantRecord
from battleground.experiment._xxh64 import xxh64_strings
from battleground.experiment.assign import (
    Assigner,
    assign_indices,
    assign_one,
    assign_variants,
    bucket,
    hash_ids,
)
from battleground.experiment.events import open_event_store
from battleground.experiment.register import Registry
from battleground.settings import Settings

SALT = "galileo-2022"
VARIANTS = ["control", "treatment", "treatment_b"]
WEIGHTS = [0.5, 0.25, 0.25]

# Known answers: (user id, variant at full traffic, variant at traffic 0.5, variant bucket u).
# They must never change: a user keeps their variant in every process, on every machine, in every
# release. u = (XXH64(f"{salt}:{id}", seed=0) >> 32) / 2**32.
PINNED = [
    (0, "control", None, 0.111705),
    (1, "treatment_b", "treatment_b", 0.819975),
    (7, "treatment_b", "treatment_b", 0.850931),
    (42, "treatment", None, 0.695562),
    (1234567890123, "treatment_b", None, 0.751272),
    ("alice", "control", None, 0.301306),
    ("bob", "treatment", "treatment", 0.607507),
    ("user-00017", "control", "control", 0.372482),
    ("사용자-1", "control", None, 0.126737),
    ("a" * 40, "control", "control", 0.256438),
    ("x:y", "treatment_b", "treatment_b", 0.879294),
    ("", "control", "control", 0.206314),
]


def _by_xxhash(user_id: object, traffic: float = 1.0) -> str | None:
    """The documented rule, written out with the reference ``xxhash`` package."""
    h = xxhash.xxh64_intdigest(f"{SALT}:{user_id}".encode())
    if (h & 0xFFFFFFFF) / 2**32 >= traffic:
        return None
    u = (h >> 32) / 2**32
    edges = np.cumsum(WEIGHTS)
    return VARIANTS[int(np.sum(u >= edges[:-1]))]


def test_pinned_answers_for_a_dozen_ids() -> None:
    ids = [p[0] for p in PINNED]
    full = [assign_one(i, salt=SALT, variants=VARIANTS, weights=WEIGHTS) for i in ids]
    half = [assign_one(i, salt=SALT, variants=VARIANTS, weights=WEIGHTS, traffic=0.5) for i in ids]
    assert full == [p[1] for p in PINNED]
    assert half == [p[2] for p in PINNED]
    assert full == [_by_xxhash(i) for i in ids]
    assert half == [_by_xxhash(i, 0.5) for i in ids]
    u = [float(bucket([i], SALT)[0]) for i in ids]
    assert u == pytest.approx([p[3] for p in PINNED], abs=5e-7)
    # Vectorised answers agree with the single-user ones, for integers and strings alike.
    ints = np.array([i for i in ids if isinstance(i, int)], dtype=np.int64)
    strings = [i for i in ids if isinstance(i, str)]
    assert assign_variants(ints, salt=SALT, variants=VARIANTS, weights=WEIGHTS).tolist() == full[: len(ints)]
    assert assign_variants(strings, salt=SALT, variants=VARIANTS, weights=WEIGHTS).tolist() == full[len(ints):]


def test_module_example() -> None:
    assert assign_one(42, salt="checkout-2022", variants=["control", "treatment"], weights=[0.5, 0.5]) == "treatment"
    assert bucket([42, 43], salt="checkout-2022").round(6).tolist() == [0.882676, 0.366246]


@pytest.mark.parametrize("length", [0, 1, 3, 4, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 100])
def test_vectorised_xxh64_is_bit_for_bit_xxhash(length: int) -> None:
    rng = np.random.default_rng(length)
    alphabet = list("abcxyz0129:-_é한")
    values = ["".join(rng.choice(alphabet, size=length)) for _ in range(50)]
    expected = [xxhash.xxh64_intdigest(b"s:" + v.encode()) for v in values]
    assert xxh64_strings(b"s:", values).tolist() == expected


def test_vectorised_equals_single_on_many_ids() -> None:
    rng = np.random.default_rng(7)
    ints = rng.integers(0, 10**15, size=3000)
    ints[:20] = np.arange(20)  # every digit count, small ids included
    strings = [f"u{v}" for v in rng.integers(0, 10**9, size=3000)]
    for ids in (ints, strings):
        single = [assign_one(i, salt=SALT, variants=VARIANTS, weights=WEIGHTS, traffic=0.7) for i in ids]
        many = assign_variants(ids, salt=SALT, variants=VARIANTS, weights=WEIGHTS, traffic=0.7)
        assert many.tolist() == single
    # Every accepted container hashes the same way.
    h = hash_ids(ints, SALT)
    assert hash_ids(pd.Series(ints), SALT).tolist() == h.tolist()
    assert hash_ids(pa.array(ints), SALT).tolist() == h.tolist()
    assert hash_ids(list(map(int, ints)), SALT).tolist() == h.tolist()
    assert hash_ids([str(i) for i in ints], SALT).tolist() == h.tolist()
    assert hash_ids(pa.array([str(i) for i in ints]), SALT).tolist() == h.tolist()
    assert hash_ids(pd.Series([str(i) for i in ints]), SALT).tolist() == h.tolist()
    negative = np.array([-5, 3], dtype=np.int64)
    assert hash_ids(negative, SALT).tolist() == [xxhash.xxh64_intdigest(f"{SALT}:{i}".encode()) for i in (-5, 3)]


def test_weights_and_traffic_are_respected() -> None:
    n = 200_000
    ids = np.arange(n)
    weights = [0.2, 0.3, 0.5]
    idx = assign_indices(ids, salt="stats", weights=weights, traffic=0.4)
    inside = idx >= 0
    # Traffic: binomial(n, 0.4) within 4 standard deviations.
    assert abs(inside.sum() - 0.4 * n) < 4 * np.sqrt(n * 0.4 * 0.6)
    counts = np.bincount(idx[inside], minlength=3)
    m = inside.sum()
    chi2 = float(np.sum((counts - m * np.array(weights)) ** 2 / (m * np.array(weights))))
    assert chi2 < 13.8  # chi-square, 2 degrees of freedom, p = 0.001
    # Raising the traffic only adds users: nobody inside moves to another variant or drops out.
    wider = assign_indices(ids, salt="stats", weights=weights, traffic=0.8)
    assert np.array_equal(wider[inside], idx[inside])
    assert (wider >= 0).sum() > inside.sum()
    # Another salt is an independent assignment.
    other = assign_indices(ids, salt="stats-2", weights=weights)
    agree = float(np.mean(other == assign_indices(ids, salt="stats", weights=weights)))
    assert abs(agree - sum(w * w for w in weights)) < 0.01


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: assign_one(1, salt="", variants=["a", "b"], weights=[0.5, 0.5]), "salt must be a non-empty"),
        (lambda: assign_one(1, salt="s", variants=["a", "b"], weights=[0.5, 0.6]), "sum to 1"),
        (lambda: assign_one(1, salt="s", variants=["a", "b"], weights=[0.5]), "equal length"),
        (lambda: assign_one(1, salt="s", variants=["a"], weights=[1.0], traffic=0), "traffic must be in (0, 1]"),
        (lambda: assign_one(1.0, salt="s", variants=["a"], weights=[1.0]), "string or an integer"),
        (lambda: hash_ids(np.array([1.0, 2.0]), "s"), "got floats"),
    ],
)
def test_bad_arguments_are_named(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()  # type: ignore[operator]


def test_assigner_uses_the_registered_experiment() -> None:
    exp = ExperimentRecord(
        3, "demo", "running", SALT, 1.0,
        tuple(VariantRecord(n, w, n == "control") for n, w in zip(VARIANTS, WEIGHTS, strict=True)), (),
        EndConditions(),
    )
    a = Assigner(exp)
    assert [a.assign(p[0]) for p in PINNED] == [p[1] for p in PINNED]
    assert a.assign_many(np.array([0, 1, 7, 42])).tolist() == [p[1] for p in PINNED[:4]]


@pytest.fixture(params=["duckdb", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("settings" if request.param == "duckdb" else "postgres_settings")


def test_exposures_are_recorded_once(backend: Settings) -> None:
    registry = Registry(backend.registry_url)
    exp = registry.create_experiment(
        "checkout", variants={"control": 0.5, "treatment": 0.5}, salt=SALT, traffic=0.6, start_at="2022-03-01"
    )
    registry.start(exp.id)
    store = open_event_store(backend)
    assigner = Assigner.from_registry(registry, "checkout")
    users = np.arange(1000)
    first = assigner.expose(
        store, users, at=dt.datetime(2022, 3, 2, 9, 0), covariates=np.linspace(0, 1, 1000)
    )
    expected = assigner.assign_many(users)
    in_traffic = int(np.sum(expected != None))  # noqa: E711 - elementwise comparison
    assert 500 < in_traffic < 700
    assert (first.received, first.inserted) == (in_traffic, in_traffic)
    # Exposing again (later, or overlapping users) adds nothing and keeps the first exposure time.
    again = assigner.expose(store, np.arange(500, 1200), at=dt.datetime(2022, 3, 3))
    new_users = int(np.sum(assigner.assign_many(np.arange(1000, 1200)) != None))  # noqa: E711
    assert again.inserted == new_users
    # the same exposure id at a later time is other content: a conflict (the first time is kept)
    assert (again.duplicates, again.conflicts) == (0, again.received - new_users)
    stored = store.to_arrow(exp.id).to_pandas()
    assert len(stored) == in_traffic + new_users
    assert set(stored["event_type"]) == {"exposure"}
    early = stored[stored["user_id"].astype(int) < 1000].set_index("user_id")
    assert (early["ts"] == pd.Timestamp("2022-03-02 09:00")).all()
    by_user = dict(zip(map(str, users), expected, strict=True))
    assert all(by_user[u] == v for u, v in early["variant"].items())
    covariates = np.linspace(0, 1, 1000)
    assert early["covariate"].to_dict() == pytest.approx({u: covariates[int(u)] for u in early.index})
    assert (stored["event_id"] == "exposure:" + str(exp.id) + ":" + stored["user_id"]).all()

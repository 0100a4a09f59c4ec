"""Issue 16 §1: the defects that break a learner left running on a stream, each pinned by a test."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from typer.testing import CliRunner

from battleground.cli import app
from battleground.errors import IncrementalError
from battleground.incremental import (
    CheckpointStore,
    Feature,
    GLMix,
    IndexedDataset,
    IndexedModel,
    IndexMap,
    SequentialBayesianLogisticRegression,
    TrainerLogisticLossWithL2,
    TrainerSequentialBayesianLogisticLossWithL2,
    TrainerSquareLossWithL2,
    TrainingRecord,
    UnknownFeatureError,
    create_router,
    load_model,
    make_stream,
    nt_domain_data_to_index_domain_data,
    run_stream,
)


@pytest.fixture(scope="module")
def stream():
    return make_stream(n_batches=6, batch_size=200, holdout_size=50, n_entities=10, n_features=3, seed=11)


def _folder(tmp_path: Path, frames: list[pd.DataFrame], names: list[str]) -> Path:
    folder = tmp_path / "batches"
    folder.mkdir(exist_ok=True)
    for name, frame in zip(names, frames, strict=True):
        frame.to_parquet(folder / f"{name}.parquet")
    return folder


def _uninterrupted(stream, frames: list[pd.DataFrame]) -> GLMix:
    model = GLMix().fit_fixed_effect(stream.warmup)
    for frame in frames:
        model.partial_fit(frame)
    return model


# -- bad records ----------------------------------------------------------------------------------

def _poisoned(stream) -> pd.DataFrame:
    bad = stream.train[1].copy()
    bad.loc[7, "label"] = np.nan
    bad.loc[9, "label"] = 2.0
    bad.loc[11, "x1"] = np.nan
    bad.loc[12, "weight"] = -1.0
    return bad


def test_bad_record_default_raises_naming_batch_file_and_row(tmp_path: Path, stream) -> None:
    folder = _folder(tmp_path, [stream.train[0], _poisoned(stream)], ["batch-1", "batch-2"])
    model = GLMix().fit_fixed_effect(stream.warmup)
    with pytest.raises(IncrementalError) as info:
        run_stream(folder, tmp_path / "ck", model=model)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "batch-2.parquet" in msg and str(folder / "batch-2.parquet") in msg
    assert "row 7" in msg and "label" in msg and "--on-bad-record" in msg
    # the good batch before it is checkpointed, so the rerun stops at the same place, not earlier
    assert CheckpointStore(tmp_path / "ck").latest().watermark == "batch-1.parquet"


def test_bad_record_skip_learns_the_good_rows(tmp_path: Path, stream) -> None:
    bad = _poisoned(stream)
    res = run_stream([("a", stream.train[0]), ("b", bad)], tmp_path / "ck",
                     model=GLMix().fit_fixed_effect(stream.warmup), on_bad_record="skip")
    assert (res.processed, res.rejected, res.records) == (2, 4, 2 * 200 - 4)
    expected = _uninterrupted(stream, [stream.train[0], bad.drop(index=[7, 9, 11, 12])])
    np.testing.assert_array_equal(res.model.re_coef_, expected.re_coef_)


def test_bad_record_quarantine_writes_rows_and_reasons(tmp_path: Path, stream) -> None:
    dead = tmp_path / "dead"
    res = run_stream([("a", stream.train[0]), ("b", _poisoned(stream))], tmp_path / "ck",
                     model=GLMix().fit_fixed_effect(stream.warmup), on_bad_record="quarantine",
                     dead_letter_dir=dead)
    assert res.rejected == 4 and res.processed == 2
    files = sorted(p.name for p in dead.iterdir())
    assert files == ["b.rejected.parquet"]
    rejected = pd.read_parquet(dead / files[0])
    assert rejected["_row"].tolist() == [7, 9, 11, 12]
    assert set(rejected["_batch"]) == {"b"}
    reasons = dict(zip(rejected["_row"], rejected["_reason"], strict=True))
    assert "label" in reasons[7] and "nan" in reasons[7].lower()
    assert "label" in reasons[9] and "2.0" in reasons[9]
    assert "x1" in reasons[11]
    assert "weight" in reasons[12]
    np.testing.assert_array_equal(rejected["x0"], _poisoned(stream).loc[[7, 9, 11, 12], "x0"])
    with pytest.raises(ValueError, match="dead_letter_dir"):
        run_stream([("a", stream.train[0])], tmp_path / "ck2", model=GLMix(), on_bad_record="quarantine")
    with pytest.raises(ValueError, match="on_bad_record"):
        run_stream([("a", stream.train[0])], tmp_path / "ck3", model=GLMix(), on_bad_record="ignore")


def test_cli_on_bad_record_quarantine(tmp_path: Path, stream) -> None:
    folder = _folder(tmp_path, [stream.train[0], _poisoned(stream)], ["batch-1", "batch-2"])
    runner = CliRunner()
    ck = tmp_path / "ck"
    r = runner.invoke(app, ["incremental", "run", str(folder), "--checkpoint-dir", str(ck), "--mode", "single"])
    assert r.exit_code == 1 and "batch-2.parquet" in " ".join(r.output.split())
    r = runner.invoke(app, ["incremental", "run", str(folder), "--checkpoint-dir", str(ck), "--mode", "single",
                            "--on-bad-record", "quarantine"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "processed 1 batches" in out and "rejected 4 records" in out
    assert (ck / "dead-letter" / "batch-2.parquet.rejected.parquet").exists()


# -- keys and the watermark -----------------------------------------------------------------------

def test_integer_keys_compare_as_numbers(tmp_path: Path, stream) -> None:
    res = run_stream([(9, stream.train[0]), (10, stream.train[1])], tmp_path / "ck", model=GLMix())
    assert res.processed == 2 and res.checkpoint.watermark == "10"
    again = run_stream([(9, stream.train[0]), (10, stream.train[1]), (11, stream.train[2])], tmp_path / "ck")
    assert (again.processed, again.skipped) == (1, 2)


def test_folder_in_natural_order_and_a_new_later_file_is_learned(tmp_path: Path, stream) -> None:
    ck = tmp_path / "ck"
    folder = _folder(tmp_path, stream.train[:2], ["batch-8", "batch-9"])
    model = GLMix().fit_fixed_effect(stream.warmup)
    assert run_stream(folder, ck, model=model).processed == 2
    _folder(tmp_path, [stream.train[2]], ["batch-10"])
    res = run_stream(folder, ck)
    assert (res.processed, res.skipped) == (1, 2)
    assert res.checkpoint.watermark == "batch-10.parquet"
    np.testing.assert_array_equal(load_model(ck).re_coef_, _uninterrupted(stream, stream.train[:3]).re_coef_)
    # a fresh folder read all at once goes 8, 9, 10 too
    other = tmp_path / "other"
    other.mkdir()
    for i, name in enumerate(["batch-10", "batch-8", "batch-9"]):
        stream.train[[2, 0, 1][i]].to_parquet(other / f"{name}.parquet")
    once = run_stream(other, tmp_path / "ck2", model=GLMix().fit_fixed_effect(stream.warmup))
    np.testing.assert_array_equal(once.model.re_coef_, _uninterrupted(stream, stream.train[:3]).re_coef_)


def test_a_new_batch_at_or_below_the_watermark_is_an_error(tmp_path: Path, stream) -> None:
    ck = tmp_path / "ck"
    folder = _folder(tmp_path, stream.train[:2], ["batch-8", "batch-9"])
    run_stream(folder, ck, model=GLMix().fit_fixed_effect(stream.warmup))
    _folder(tmp_path, [stream.train[2]], ["batch-7"])
    with pytest.raises(IncrementalError, match=r"batch-7\.parquet.*watermark.*batch-9\.parquet.*never learned"):
        run_stream(folder, ck)
    assert CheckpointStore(ck).latest().n_batches == 2  # nothing learned, nothing skipped silently


def test_unkeyed_frames_cannot_resume(tmp_path: Path, stream) -> None:
    ck = tmp_path / "ck"
    frames = stream.train
    run_stream(frames[:2], ck, model=GLMix().fit_fixed_effect(stream.warmup))
    with pytest.raises(IncrementalError, match=r"\(key, frame\) pairs"):
        run_stream(frames[2:], ck)
    # keyed pairs resume as expected
    keyed = [(f"k{i:02d}", f) for i, f in enumerate(frames)]
    ck2 = tmp_path / "ck2"
    run_stream(keyed[:2], ck2, model=GLMix().fit_fixed_effect(stream.warmup))
    res = run_stream(keyed[2:], ck2)
    assert res.processed == len(frames) - 2
    np.testing.assert_array_equal(res.model.re_coef_, _uninterrupted(stream, frames).re_coef_)


def test_temporary_checkpoint_files_are_cleaned_on_start(tmp_path: Path, stream) -> None:
    ck = tmp_path / "ck"
    run_stream([("a", stream.train[0])], ck, model=GLMix())
    leftover = ck / ".tmp-0123abcd-model-v000002.npz"
    leftover.write_bytes(b"half a checkpoint")
    run_stream([("a", stream.train[0]), ("b", stream.train[1])], ck)
    assert not leftover.exists()


# -- models ---------------------------------------------------------------------------------------

def test_empty_batch_is_a_no_op(tmp_path: Path, stream) -> None:
    model = GLMix().fit_fixed_effect(stream.warmup).partial_fit(stream.train[0])
    before = (model.re_coef_.copy(), model.re_precision_.copy(), model.n_batches_)
    model.partial_fit(stream.train[1].iloc[:0])
    np.testing.assert_array_equal(model.re_coef_, before[0])
    np.testing.assert_array_equal(model.re_precision_, before[1])
    assert model.n_batches_ == before[2]
    single = SequentialBayesianLogisticRegression().partial_fit(stream.train[0])
    coef = single.coef_.copy()
    single.partial_fit(stream.train[1].iloc[:0])
    np.testing.assert_array_equal(single.coef_, coef)
    res = run_stream([("a", stream.train[0]), ("b", stream.train[1].iloc[:0]), ("c", stream.train[1])],
                     tmp_path / "ck", model=GLMix().fit_fixed_effect(stream.warmup))
    assert res.processed == 3 and res.checkpoint.watermark == "c"


def test_index_map_memo_follows_a_changed_feature_list() -> None:
    recs = [TrainingRecord(1, 1.0, 0.0, [Feature("a", "", 1.0), Feature("b", "", 2.0)])]
    imap, _ = IndexMap.from_records_means_and_variances(recs, [], [])
    recs[0].features = [Feature("b", "", 5.0), Feature("a", "", 7.0)]  # same length, other features
    data = nt_domain_data_to_index_domain_data(recs, imap)
    np.testing.assert_array_equal(data.X.toarray(), [[1.0, 7.0, 5.0]])


def test_unknown_feature_error_is_an_index_error() -> None:
    assert issubclass(UnknownFeatureError, IndexError)
    assert issubclass(UnknownFeatureError, LookupError) and issubclass(UnknownFeatureError, IncrementalError)
    with pytest.raises(IndexError):
        IndexMap().get_index(("nope", ""))


def _data(n: int = 300, seed: int = 0) -> IndexedDataset:
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 3))])
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ np.array([0.2, 1.0, -0.5, 0.3])))).astype(float)
    return IndexedDataset(sparse.csr_matrix(X), y, rng.uniform(0.5, 2.0, n), rng.normal(0, 0.1, n))


def _prior() -> IndexedModel:
    return IndexedModel(np.array([0.1, 0.2, 0.0, -0.1]), sparse.diags([5.0, 4.0, 3.0, 2.0]).tocsr())


def test_zero_iterations_and_zero_tolerance_are_honoured() -> None:
    trainer = TrainerSequentialBayesianLogisticLossWithL2(training_data=_data(), initial_model=_prior(),
                                                           penalty=10.0, on_failure="report")
    model, _, meta = trainer.train(max_iterations=0)
    assert meta["nit"] == 0 and meta["converged"] is False
    np.testing.assert_array_equal(model.theta, _prior().theta)
    _, _, meta = trainer.train(gradient_tolerance=0.0, max_iterations=7)
    assert meta["nit"] == 7  # a tolerance of 0 is never met before the limit
    lbfgs = TrainerLogisticLossWithL2(training_data=_data(), initial_model=_prior(), penalty=1.0,
                                      solver="lbfgs", on_failure="report")
    _, _, meta = lbfgs.train(max_iterations=0)
    assert meta["converged"] is False


def test_solver_options_the_newton_solver_ignores_warn() -> None:
    trainer = TrainerSequentialBayesianLogisticLossWithL2(training_data=_data(), initial_model=_prior(), penalty=10.0)
    with pytest.warns(UserWarning, match=r"max_funcalls.*precision.*newton"):
        trainer.train(max_funcalls=5, precision=1e7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.train(max_iterations=50, gradient_tolerance=1e-8)  # used: no warning
        TrainerLogisticLossWithL2(training_data=_data(), initial_model=_prior(), penalty=1.0,
                                  solver="lbfgs").train(max_funcalls=15000, precision=1e7)
    with pytest.warns(UserWarning, match="max_iterations"):
        TrainerSquareLossWithL2(training_data=_data(), initial_model=_prior(), penalty=1.0).train(max_iterations=3)


@pytest.mark.parametrize("kind", ["sequential", "logistic", "square"])
def test_trainers_offer_loss_and_gradient(kind: str) -> None:
    cls = {"sequential": TrainerSequentialBayesianLogisticLossWithL2, "logistic": TrainerLogisticLossWithL2,
           "square": TrainerSquareLossWithL2}[kind]
    trainer = cls(training_data=_data(), initial_model=_prior(), penalty=3.0)
    model, loss, _ = trainer.train()
    assert trainer.loss(model.theta) == pytest.approx(loss, rel=1e-12)
    assert np.max(np.abs(trainer.gradient(model.theta))) < 1e-6
    theta = np.array([0.3, -0.2, 0.5, 0.1])
    eps = 1e-6
    numeric = [(trainer.loss(theta + eps * e) - trainer.loss(theta - eps * e)) / (2 * eps) for e in np.eye(4)]
    np.testing.assert_allclose(trainer.gradient(theta), numeric, rtol=1e-6, atol=1e-6)


# -- serving and the CLI --------------------------------------------------------------------------

def test_score_rejects_nan_and_flags_fixed_effect_only(tmp_path: Path, stream) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    ck = tmp_path / "ck"
    run_stream([("a", stream.train[0])], ck, model=GLMix().fit_fixed_effect(stream.warmup))
    app_ = FastAPI()
    app_.include_router(create_router(ck), prefix="/incremental")
    client = TestClient(app_, raise_server_exceptions=False)
    body = b'{"rows": [{"entity": 1, "features": {"x0": NaN, "x1": 0.0, "x2": 0.0}}]}'
    resp = client.post("/incremental/score", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    known = str(load_model(ck).entities_[0])
    rows = [{"entity": known, "features": {"x0": 0.1, "x1": 0.0, "x2": 0.0}},
            {"entity": "never-seen", "features": {"x0": 0.1, "x1": 0.0, "x2": 0.0}},
            {"features": {"x0": 0.1, "x1": 0.0, "x2": 0.0}}]
    resp = client.post("/incremental/score", json={"rows": rows})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["fixed_effect_only"] == [False, True, True]
    assert out["scores"][1] == pytest.approx(out["scores"][2])


def test_cli_options_conflicting_with_the_checkpoint_are_errors(tmp_path: Path, stream) -> None:
    folder = _folder(tmp_path, stream.train[:2], ["batch-1", "batch-2"])
    ck = tmp_path / "ck"
    runner = CliRunner()
    base = ["incremental", "run", str(folder), "--checkpoint-dir", str(ck)]
    assert runner.invoke(app, [*base, "--mode", "single", "--max-batches", "1"]).exit_code == 0
    for extra, word in ((["--mode", "glmix"], "mode"), (["--penalty", "5"], "penalty"),
                        (["--delta", "0.5"], "delta")):
        r = runner.invoke(app, [*base, *extra])
        out = " ".join(r.output.split())
        assert r.exit_code == 1 and word in out and "checkpoint" in out, (extra, r.output)
    assert CheckpointStore(ck).latest().n_batches == 1
    r = runner.invoke(app, [*base, "--mode", "single", "--penalty", "10", "--delta", "0.8"])  # the same: fine
    assert r.exit_code == 0, r.output
    assert CheckpointStore(ck).latest().n_batches == 2


def test_screening_hands_the_model_parsed_arrays_identical_to_the_frame(stream) -> None:
    from battleground.incremental._badrows import screen
    from battleground.incremental._frames import split_frame

    bad = _poisoned(stream)
    screened = screen(bad, feature_names=None, needs_entity=True)
    assert screened.batch is not None and screened.n_rejected == 4
    want = split_frame(screened.good)
    got = screened.batch
    assert got.feature_names == want.feature_names
    for a, b in ((got.X, want.X), (got.label, want.label), (got.weight, want.weight), (got.offset, want.offset)):
        np.testing.assert_array_equal(a, b)
    assert got.entity is not None and want.entity is not None and list(got.entity) == list(want.entity)
    assert split_frame(got) is got  # partial_fit takes the parsed batch as it is
    with pytest.raises(IncrementalError, match="carries its own"):
        split_frame(got, np.zeros(got.n))

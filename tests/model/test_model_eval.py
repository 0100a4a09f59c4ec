"""battleground.model.eval: metrics against hand computations, plots, the OPE re-export."""

from __future__ import annotations

import numpy as np
import pytest

from battleground.model.eval import EvalClassifierModel, EvalRegressorModel


def test_classifier_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2])
    r = EvalClassifierModel(beta=1.0).calculate(p, y)
    assert r.roc_auc == pytest.approx(8 / 9)
    assert r.confusion_matrix == ((2, 1), (1, 2))
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3)
    assert r.fbeta == pytest.approx(2 / 3)
    assert r.brier == pytest.approx(np.mean((p - y) ** 2))
    assert r.log_loss == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert r.best_fbeta == pytest.approx(6 / 7) and r.best_threshold == pytest.approx(0.4)
    two_col = EvalClassifierModel(beta=1.0).calculate(np.c_[1 - p, p], y)
    assert two_col == r
    with pytest.raises(ValueError, match="single class"):
        EvalClassifierModel().calculate(p, np.zeros(6))


def test_regressor_metrics() -> None:
    r = EvalRegressorModel().calculate([2.0, 4.0, 0.5], [1.0, 4.0, 0.0])
    assert r.mae == pytest.approx(0.5)
    assert r.rmse == pytest.approx(np.sqrt(1.25 / 3))
    assert r.mape == pytest.approx(0.5)
    assert r.r2 == pytest.approx(1 - 1.25 / np.var([1.0, 4.0, 0.0]) / 3)


def test_plots_write_png_and_html(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    p = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.15, 300), 0.01, 0.99)
    paths = EvalClassifierModel().plots(p, y, tmp_path, title="toy")
    for name in ("roc", "pr", "calibration"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 3 and "roc_auc" in html


def test_eval_recommender_is_reexported() -> None:
    from battleground import ope
    from battleground.model.eval import EvalRecommenderModel

    assert EvalRecommenderModel is ope.EvalRecommenderModel

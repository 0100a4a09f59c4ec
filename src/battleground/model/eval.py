"""Model evaluation: classification and regression metrics, plots, and (re-exported) off-policy
evaluation.

Example:
    >>> import numpy as np
    >>> from battleground.model.eval import EvalClassifierModel, EvalRegressorModel
    >>> r = EvalClassifierModel().calculate(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    >>> r.roc_auc
    0.75
    >>> EvalRegressorModel().calculate(np.array([1.0, 2.0]), np.array([1.0, 3.0])).mae
    0.5
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from battleground.model.data import ModelInputError

__all__ = [
    "ClassificationReport",
    "EvalClassifierModel",
    "EvalRecommenderModel",  # noqa: F822 - loaded lazily by __getattr__
    "EvalRegressorModel",
    "RegressionReport",
]


def __getattr__(name: str) -> Any:
    # EvalRecommenderModel (off-policy evaluation) lives in battleground.ope; load it only when asked
    if name == "EvalRecommenderModel":
        from battleground import ope

        return ope.EvalRecommenderModel
    raise AttributeError(f"module 'battleground.model.eval' has no attribute {name!r}")


@dataclass(frozen=True)
class ClassificationReport:
    """Metrics of probabilistic binary predictions; ``fbeta``/``precision``/``recall``/
    ``confusion_matrix`` ([[tn, fp], [fn, tp]]) at ``threshold``, and the F-beta-maximising threshold."""

    n: int
    prevalence: float
    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float
    beta: float
    threshold: float
    fbeta: float
    precision: float
    recall: float
    confusion_matrix: tuple[tuple[int, int], tuple[int, int]]
    best_threshold: float
    best_fbeta: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """The scalar metrics, for logging."""
        return {k: float(v) for k, v in asdict(self).items() if isinstance(v, int | float)}


@dataclass(frozen=True)
class RegressionReport:
    """RMSE, MAE, R² and MAPE (rows with a zero target are left out of MAPE)."""

    n: int
    rmse: float
    mae: float
    r2: float
    mape: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """The scalar metrics, for logging."""
        return {k: float(v) for k, v in asdict(self).items()}


def _positive_scores(pred: Any) -> np.ndarray:
    p = np.asarray(pred, dtype=float)
    if p.ndim == 2:
        if p.shape[1] != 2:
            raise ModelInputError(f"pred has {p.shape[1]} columns; pass P(class 1) or a two-column predict_proba")
        p = p[:, 1]
    return p


class EvalClassifierModel:
    """``calculate(pred, y)`` → :class:`ClassificationReport`; ``plots(pred, y, folder)`` writes
    ROC, PR and calibration PNGs plus an HTML page showing them with the metrics.

    ``pred`` is P(y=1) or a two-column ``predict_proba`` output. F-beta uses ``beta`` (0.5 weighs
    precision twice as much as recall, seed ``002``'s default).
    """

    def __init__(self, beta: float = 0.5, threshold: float = 0.5) -> None:
        if beta <= 0:
            raise ModelInputError(f"beta={beta!r} must be positive")
        if not 0 < threshold < 1:
            raise ModelInputError(f"threshold={threshold!r} must lie in (0, 1)")
        self.beta = beta
        self.threshold = threshold

    def calculate(self, pred: Any, y: Any) -> ClassificationReport:
        from sklearn import metrics as m

        p = _positive_scores(pred)
        yy = np.asarray(y).astype(int)
        if p.shape[0] != yy.shape[0]:
            raise ModelInputError(f"pred has {p.shape[0]} rows but y has {yy.shape[0]}")
        if len(np.unique(yy)) != 2:
            raise ModelInputError(f"y has a single class {np.unique(yy).tolist()}; ROC AUC needs both classes")
        if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
            raise ModelInputError("pred must be probabilities in [0, 1]")
        hard = (p >= self.threshold).astype(int)
        cm = m.confusion_matrix(yy, hard, labels=[0, 1])
        prec, rec, thr = m.precision_recall_curve(yy, p)
        b2 = self.beta**2
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where((b2 * prec + rec) > 0, (1 + b2) * prec * rec / (b2 * prec + rec), 0.0)[:-1]
        best = int(np.argmax(f)) if f.size else 0
        return ClassificationReport(
            n=int(yy.size),
            prevalence=float(yy.mean()),
            roc_auc=float(m.roc_auc_score(yy, p)),
            pr_auc=float(m.average_precision_score(yy, p)),
            log_loss=float(m.log_loss(yy, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
            brier=float(m.brier_score_loss(yy, p)),
            beta=float(self.beta),
            threshold=float(self.threshold),
            fbeta=float(m.fbeta_score(yy, hard, beta=self.beta, zero_division=0.0)),
            precision=float(m.precision_score(yy, hard, zero_division=0.0)),
            recall=float(m.recall_score(yy, hard, zero_division=0.0)),
            confusion_matrix=((int(cm[0, 0]), int(cm[0, 1])), (int(cm[1, 0]), int(cm[1, 1]))),
            best_threshold=float(thr[best]) if f.size else float(self.threshold),
            best_fbeta=float(f[best]) if f.size else 0.0,
        )

    def plots(self, pred: Any, y: Any, folder: str | Path, *, title: str = "model") -> dict[str, Path]:
        """Write ``roc.png``, ``pr.png``, ``calibration.png`` and ``report.html`` into ``folder``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn import metrics as m
        from sklearn.calibration import calibration_curve

        report = self.calculate(pred, y)
        p = _positive_scores(pred)
        yy = np.asarray(y).astype(int)
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}

        fpr, tpr, _ = m.roc_curve(yy, p)
        prec, rec, _ = m.precision_recall_curve(yy, p)
        frac, mean = calibration_curve(yy, p, n_bins=10, strategy="quantile")
        curves = {
            "roc": (fpr, tpr, "false positive rate", "true positive rate", f"ROC AUC {report.roc_auc:.3f}"),
            "pr": (rec, prec, "recall", "precision", f"PR AUC {report.pr_auc:.3f}"),
            "calibration": (mean, frac, "mean predicted probability", "observed frequency",
                            f"Brier {report.brier:.3f}"),
        }
        for name, (xs, ys, xl, yl, label) in curves.items():
            fig, ax = plt.subplots(figsize=(4.5, 4))
            ax.plot(xs, ys, marker="o" if name == "calibration" else None, label=label)
            if name != "pr":
                ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.set_title(f"{title}: {name}")
            ax.legend(loc="best")
            fig.tight_layout()
            paths[name] = out / f"{name}.png"
            fig.savefig(paths[name], dpi=80)
            plt.close(fig)
        paths["html"] = _html_report(out, title, report.metrics(), {k: paths[k] for k in curves},
                                     threshold=report.threshold, confusion_matrix=report.confusion_matrix)
        return paths


def _html_report(out: Path, title: str, metrics: dict[str, float], images: dict[str, Path], *,
                 threshold: float | None = None, confusion_matrix: Any = None) -> Path:
    """``report.html`` in ``out``: the metrics and the PNGs inlined (one self-contained file)."""
    import base64

    from battleground._html import environment

    html = environment().get_template("model/eval_report.html.j2").render(
        title=title, metrics=list(metrics.items()), threshold=threshold, confusion_matrix=confusion_matrix,
        images=[(k, base64.b64encode(p.read_bytes()).decode()) for k, p in images.items()],
    )
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


class EvalRegressorModel:
    """``calculate(pred, y)`` → :class:`RegressionReport`; ``plots(pred, y, folder)`` writes the
    predicted-vs-actual, residuals-vs-predicted and residual-histogram PNGs plus an HTML page."""

    def calculate(self, pred: Any, y: Any) -> RegressionReport:
        p = np.asarray(pred, dtype=float).ravel()
        yy = np.asarray(y, dtype=float).ravel()
        if p.shape != yy.shape or p.size == 0:
            raise ModelInputError(f"pred ({p.size} values) and y ({yy.size} values) must be non-empty and equal length")
        err = p - yy
        ss_tot = float(((yy - yy.mean()) ** 2).sum())
        nz = yy != 0
        return RegressionReport(
            n=int(yy.size),
            rmse=float(np.sqrt(np.mean(err**2))),
            mae=float(np.mean(np.abs(err))),
            r2=float(1 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
            mape=float(np.mean(np.abs(err[nz] / yy[nz]))) if nz.any() else float("nan"),
        )

    def plots(self, pred: Any, y: Any, folder: str | Path, *, title: str = "model") -> dict[str, Path]:
        """Write ``predicted_vs_actual.png``, ``residuals.png`` (residual = actual - predicted, against the
        prediction), ``residual_histogram.png`` and ``report.html`` into ``folder``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        report = self.calculate(pred, y)
        p = np.asarray(pred, dtype=float).ravel()
        yy = np.asarray(y, dtype=float).ravel()
        resid = yy - p
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name in ("predicted_vs_actual", "residuals", "residual_histogram"):
            fig, ax = plt.subplots(figsize=(4.5, 4))
            if name == "predicted_vs_actual":
                lo, hi = float(min(p.min(), yy.min())), float(max(p.max(), yy.max()))
                ax.scatter(yy, p, s=6, alpha=0.5, label=f"RMSE {report.rmse:.3f}, R² {report.r2:.3f}")
                ax.plot([lo, hi], [lo, hi], linestyle="--", color="grey", linewidth=1)
                ax.set_xlabel("actual")
                ax.set_ylabel("predicted")
                ax.legend(loc="best")
            elif name == "residuals":
                ax.scatter(p, resid, s=6, alpha=0.5)
                ax.axhline(0.0, linestyle="--", color="grey", linewidth=1)
                ax.set_xlabel("predicted")
                ax.set_ylabel("residual (actual - predicted)")
            else:
                ax.hist(resid, bins=min(50, max(10, resid.size // 20)))
                ax.set_xlabel("residual (actual - predicted)")
                ax.set_ylabel("rows")
            ax.set_title(f"{title}: {name.replace('_', ' ')}")
            fig.tight_layout()
            paths[name] = out / f"{name}.png"
            fig.savefig(paths[name], dpi=80)
            plt.close(fig)
        paths["html"] = _html_report(out, title, report.metrics(), dict(paths))
        return paths

"""The model functions work with Kedro and Ray missing (the wheel's promise; MLflow needs no server:
every other test uses the embedded SQLite store)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r'''
import importlib.abc, sys
BLOCKED = ("kedro", "kedro_datasets", "kedro_telemetry", "ray")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Block())
from battleground.model.data import CreateDataSet, FeatureSelection, Preprocess
from battleground.model.eval import EvalClassifierModel
from battleground.model.tracking import TrainingConfig, log_seed
from battleground.model.train import Trainer, leaderboard, tune

log_seed(3)
ds = CreateDataSet(n_characters=600, seed=2)
X, y = ds.load_train_set()
Xt, yt = ds.load_test_set()
Preprocess().fit_transform(FeatureSelection(method="variance").fit_transform(X, y))
r = tune("lightgbm", X, y, Xt, yt, n_trials=2, search_space={"lightgbm": {"n_estimators": [10, 30]}}, seed=1)
board = leaderboard(X, y, Xt, yt, models=["logistic"])
auc = EvalClassifierModel().calculate(r.trainer.predict_proba(Xt), yt).roc_auc
TrainingConfig.from_mapping({"train": {"supported_models": ["LGBMClassifier"]}})
print("loaded", sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED)), f"auc={auc:.3f}",
      f"logistic={board.table['roc_auc'][0]:.3f}")
'''


def test_model_functions_run_without_kedro_or_ray(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("loaded [] auc=0.")
    assert 0.7 < float(line.split("auc=")[1].split()[0]) < 0.95

"""A compiled walk of a LightGBM booster's trees for batch scoring: the same numbers as
``Booster.predict`` on the same float64 matrix, bit for bit, in about half the time.

LightGBM walks every tree for one row before the next row; this walks one tree over a block of rows
before the next tree (the tree's nodes stay in cache), and sums each row's leaf values in LightGBM's
order (tree 0, 1, ...), starting from 0.0, so the sum is the same double. The decisions follow
LightGBM's ``Tree::NumericalDecision``/``CategoricalDecision`` (missing types, default directions,
category bitsets, values within ``kZeroThreshold`` of zero read as zero).

Needs numba (the ``explain`` extra brings it); :func:`compile_booster` returns None without it, or for a
booster it does not cover (linear trees, several trees per iteration, random-forest averaging), and
callers keep LightGBM's own ``predict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CompiledBooster", "compile_booster"]

_BLOCK = 2048  # rows walked per tree before the next tree: a block of the matrix stays in L2


@dataclass(frozen=True)
class CompiledBooster:
    """One booster's trees as flat arrays (``arrays``, in :func:`_kernel`'s order) and its sigmoid."""

    arrays: tuple[np.ndarray, ...]
    n_features: int
    sigmoid: float | None  # the binary objective's scale; None: raw scores only

    def predict(self, mat: np.ndarray, raw_score: bool) -> np.ndarray | None:
        """The booster's raw score of each row of ``mat`` (or its probability for ``raw_score=False``);
        None when ``mat`` is not a C-ordered float64 matrix of the booster's width, or no kernel."""
        if not (isinstance(mat, np.ndarray) and mat.dtype == np.float64 and mat.ndim == 2
                and mat.flags.c_contiguous and mat.shape[1] == self.n_features):
            return None
        if not raw_score and self.sigmoid is None:
            return None
        kernel = _kernel()
        if kernel is None:
            return None
        out = np.zeros(len(mat), dtype=np.float64)
        kernel(mat, out, *self.arrays, _BLOCK)
        if raw_score or self.sigmoid is None:
            return out
        return _sigmoid_kernel()(out, self.sigmoid)  # type: ignore[no-any-return]


def compile_booster(booster: Any) -> CompiledBooster | None:
    """The flat form of ``booster``'s trees up to its best iteration (what ``predict`` uses by
    default), or None when numba is missing or the booster has a feature the walk does not cover."""
    if _kernel() is None:
        return None
    return _parse(booster.model_to_string())


def _parse(text: str) -> CompiledBooster | None:
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("end of trees"):
            break
        if line.startswith("Tree="):
            trees.append({})
        elif "=" in line:
            key, value = line.split("=", 1)
            (trees[-1] if trees else header)[key] = value
    if header.get("num_tree_per_iteration", "1") != "1" or "average_output" in header or not trees:
        return None
    objective = header.get("objective", "").split()
    sigmoid = None
    if objective and objective[0] == "binary":
        scale = [o.split(":", 1)[1] for o in objective[1:] if o.startswith("sigmoid:")]
        sigmoid = float(scale[0]) if scale else 1.0
    cols: dict[str, list[Any]] = {k: [] for k in ("feat", "thr", "left", "right", "cat", "nan_left", "zero_default",
                                                  "default_left", "bits_at", "bits_len")}
    bits: list[int] = []
    leaves: list[float] = []
    node_at: list[int] = []
    leaf_at: list[int] = []
    n_leaves: list[int] = []
    for tree in trees:
        if tree.get("is_linear", "0") != "0":
            return None
        n = int(tree["num_leaves"])
        node_at.append(len(cols["feat"]))
        leaf_at.append(len(leaves))
        n_leaves.append(n)
        leaves.extend(float(v) for v in tree["leaf_value"].split())
        if n == 1:
            continue
        feats, thresholds = tree["split_feature"].split(), [float(v) for v in tree["threshold"].split()]
        kinds = [int(v) for v in tree["decision_type"].split()]
        bounds = [int(v) for v in tree.get("cat_boundaries", "").split()]
        words = [int(v) for v in tree.get("cat_threshold", "").split()]
        cols["feat"].extend(int(v) for v in feats)
        cols["left"].extend(int(v) for v in tree["left_child"].split())
        cols["right"].extend(int(v) for v in tree["right_child"].split())
        for thr, kind in zip(thresholds, kinds, strict=True):
            missing, default_left = (kind >> 2) & 3, bool(kind & 2)
            if kind & 1:  # categorical: threshold is the index of the node's bitset
                lo, hi = bounds[int(thr)], bounds[int(thr) + 1]
                cols["bits_at"].append(len(bits))
                cols["bits_len"].append(hi - lo)
                bits.extend(words[lo:hi])
                cols["thr"].append(0.0)
                cols["nan_left"].append(False)
                cols["zero_default"].append(False)
            else:
                cols["bits_at"].append(0)
                cols["bits_len"].append(0)
                cols["thr"].append(thr)
                # NaN goes the default way for missing types Zero (NaN reads as 0) and NaN; else reads as 0.0
                cols["nan_left"].append(default_left if missing in (1, 2) else thr >= 0.0)
                cols["zero_default"].append(missing == 1)
            cols["cat"].append(bool(kind & 1))
            cols["default_left"].append(default_left)
    max_feature = int(header.get("max_feature_idx", max(cols["feat"], default=0)))
    arrays = (np.asarray(cols["feat"], np.int64), np.asarray(cols["thr"], np.float64),
              np.asarray(cols["left"], np.int64), np.asarray(cols["right"], np.int64),
              np.asarray(cols["cat"], np.bool_), np.asarray(cols["nan_left"], np.bool_),
              np.asarray(cols["zero_default"], np.bool_), np.asarray(cols["default_left"], np.bool_),
              np.asarray(cols["bits_at"], np.int64), np.asarray(cols["bits_len"], np.int64),
              np.asarray(bits, np.uint32), np.asarray(leaves, np.float64), np.asarray(node_at, np.int64),
              np.asarray(leaf_at, np.int64), np.asarray(n_leaves, np.int64))
    return CompiledBooster(arrays=arrays, n_features=max_feature + 1, sigmoid=sigmoid)


_KERNELS: dict[str, Any] = {}


def _kernel() -> Any:
    """The compiled walk (numba, cached on disk), or None without numba."""
    if "walk" not in _KERNELS:
        try:
            import numba
        except ImportError:
            _KERNELS["walk"] = _KERNELS["sigmoid"] = None
            return None
        _KERNELS["walk"] = numba.njit(cache=True, nogil=True)(_walk)
        _KERNELS["sigmoid"] = numba.njit(cache=True, nogil=True)(_sigmoid)
    return _KERNELS["walk"]


def _sigmoid_kernel() -> Any:
    _kernel()
    return _KERNELS["sigmoid"]


def _sigmoid(raw: np.ndarray, scale: float) -> np.ndarray:  # pragma: no cover - runs compiled
    # BinaryLogloss::ConvertOutput: 1 / (1 + exp(-sigmoid * x)), with libm's exp as LightGBM calls it
    for i in range(raw.shape[0]):
        raw[i] = 1.0 / (1.0 + math.exp(-scale * raw[i]))
    return raw


def _walk(mat: np.ndarray, out: np.ndarray, feat: np.ndarray, thr: np.ndarray, left: np.ndarray,
          right: np.ndarray, cat: np.ndarray, nan_left: np.ndarray, zero_default: np.ndarray,
          default_left: np.ndarray, bits_at: np.ndarray, bits_len: np.ndarray, bits: np.ndarray,
          leaves: np.ndarray, node_at: np.ndarray, leaf_at: np.ndarray, n_leaves: np.ndarray,
          block: int) -> None:  # pragma: no cover - runs compiled
    n = mat.shape[0]
    for start in range(0, n, block):
        stop = min(n, start + block)
        for t in range(node_at.shape[0]):
            first_leaf = leaf_at[t]
            if n_leaves[t] == 1:
                for i in range(start, stop):
                    out[i] += leaves[first_leaf]
                continue
            base = node_at[t]
            for i in range(start, stop):
                node = 0
                while node >= 0:
                    k = base + node
                    f = mat[i, feat[k]]
                    if not cat[k]:
                        if f != f:
                            go = nan_left[k]
                        elif abs(f) <= 1e-35:  # read as 0.0 (LightGBM keeps no value this close to zero)
                            go = default_left[k] if zero_default[k] else thr[k] >= 0.0
                        else:
                            go = f <= thr[k]
                    elif f != f or f <= -1.0 or f >= 2147483648.0:  # NaN, negative, beyond int: right
                        go = False
                    else:
                        code = np.int64(f)
                        word = code >> 5
                        go = word < bits_len[k] and ((bits[bits_at[k] + word] >> np.uint32(code & 31)) & 1) != 0
                    node = left[k] if go else right[k]
                out[i] += leaves[first_leaf + ~node]

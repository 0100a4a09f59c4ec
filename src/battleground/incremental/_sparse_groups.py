"""Stacked Newton systems of many small groups when the design is sparse (wide random effects).

A random effect with 60 mostly-zero features builds, per row, a dense 61 × 61 outer product and, per
entity, a dense 61 × 61 solve, although a row touches a handful of columns and an entity's rows a few
dozen. :class:`SparseGroups` keeps the per-row nonzero pairs (the Hessian is one ``bincount`` over them)
and solves each group only on the columns its rows touch: on every other column the Hessian is the
diagonal prior term alone, so the Newton step there is ``-g / h`` exactly. Groups are solved in buckets
of equal (power-of-two) size with one batched solve per bucket.
"""

from __future__ import annotations

import numpy as np


class SparseGroups:
    """The nonzero pattern of ``X`` (rows sorted by ``group``, groups 0..G-1 starting at ``starts``)."""

    def __init__(self, X: np.ndarray, group: np.ndarray, starts: np.ndarray, G: int) -> None:
        n, p = X.shape
        self.G, self.p = G, p
        rows, cols = np.nonzero(X)  # row-major: entries sorted by row
        vals = X[rows, cols]
        r = np.bincount(rows, minlength=n)
        first = np.r_[0, np.cumsum(r)[:-1]]  # first entry of each row
        per = r[rows]  # partners of each entry: the entries of its row
        left = np.repeat(np.arange(rows.size), per)
        k = np.arange(left.size) - np.repeat(np.cumsum(per) - per, per)
        right = first[rows[left]] + k
        self.pair_row = rows[left]
        self.pair_val = vals[left] * vals[right]
        self.pair_flat = (group[self.pair_row] * p + cols[left]) * p + cols[right]
        touched = np.add.reduceat((X != 0).astype(np.int64), starts, axis=0) > 0
        sizes = touched.sum(axis=1)
        # each group's touched columns first (then untouched ones: they pad a bucket harmlessly, their
        # rows of H being diagonal); buckets of power-of-two size
        self.order = np.argsort(~touched, axis=1, kind="stable")
        width = np.minimum(p, 1 << np.ceil(np.log2(np.maximum(sizes, 1))).astype(np.int64))
        self.buckets = [(np.flatnonzero(width == b), int(b)) for b in np.unique(width)]

    @staticmethod
    def pays(X: np.ndarray) -> bool:
        """True when the rows' nonzero pairs are far fewer than the dense outer products."""
        n, p = X.shape
        nnz = np.count_nonzero(X, axis=1)
        return p >= 8 and 4 * int(nnz @ nnz) < n * p * p

    def hessians(self, d: np.ndarray, diag: np.ndarray) -> np.ndarray:
        """G × p × p: Σ_rows d · x xᵀ per group, plus ``diag`` (G × p) on the diagonals."""
        G, p = self.G, self.p
        H = np.bincount(self.pair_flat, weights=self.pair_val * d[self.pair_row], minlength=G * p * p)
        H = H.reshape(G, p, p)
        idx = np.arange(p)
        H[:, idx, idx] += diag
        return H

    def solve(self, H: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """``H[g]⁻¹ rhs[g]`` for every group, each on its touched columns."""
        out = rhs / np.diagonal(H, axis1=1, axis2=2)  # untouched columns: H is diagonal there
        for gs, b in self.buckets:
            cols = self.order[gs, :b]
            Hb = H[gs[:, None, None], cols[:, :, None], cols[:, None, :]]
            rb = np.take_along_axis(rhs[gs], cols, axis=1)
            out[gs[:, None], cols] = np.linalg.solve(Hb, rb[:, :, None])[:, :, 0]
        return out

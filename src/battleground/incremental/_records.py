"""Name-term-value records, the index map, and the index-domain data and model (Lambda Learner API)."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.errors import IncrementalError

if TYPE_CHECKING:
    from scipy import sparse

Name = str
Term = str
NameTerm = tuple[str, str]

INTERCEPT_NT: NameTerm = ("intercept", "intercept")

_NAME = attrgetter("name")
_TERM = attrgetter("term")
_EMPTY: dict[str, int] = {}
_VALUE = attrgetter("value")
_FEATURES = attrgetter("features")
_LABEL = attrgetter("label")
_WEIGHT = attrgetter("weight")
_OFFSET = attrgetter("offset")


class UnknownFeatureError(IncrementalError, IndexError):
    """A name-term is not in the index map (an ``IndexError``, hence a ``LookupError``, as the seed expects)."""


class IncrementalInputError(IncrementalError, ValueError):
    """Records, parameters, streams or checkpoints that incremental learning cannot use."""


class HessianType(enum.Enum):
    """How the trainer updates the coefficient Hessian (the posterior precision).

    FULL keeps the whole matrix, DIAGONAL only its diagonal, IDENTITY sets it to I, NONE drops it.
    """

    FULL = 0
    DIAGONAL = 1
    IDENTITY = 2
    NONE = 4


@dataclass(slots=True, eq=False)
class Feature:
    """One feature (or coefficient) in name-term-value form, e.g. ``Feature("x", "3", 0.7)``."""

    name: Name
    term: Term
    value: float

    @property
    def name_term(self) -> NameTerm:
        return (self.name, self.term)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Feature):
            return NotImplemented
        return (
            self.name == other.name and self.term == other.term and math.isclose(self.value, other.value)
        )


@dataclass(slots=True)
class TrainingRecord:
    """One training example: label, weight, offset (e.g. the fixed-effect score) and its features.

    Unlike the original library, the label is kept as given: the logistic trainers check that labels
    are binary (0/1 or -1/+1) instead of silently turning every non-1 label into -1.
    """

    label: float
    weight: float
    offset: float
    features: list[Feature]
    context: dict[str, str] | None = field(default=None)

    @property
    def name_terms(self) -> list[NameTerm]:
        return list(dict.fromkeys((f.name, f.term) for f in self.features))


class IndexMap:
    """Two-way map between name-terms and column indices; index 0 is always the intercept."""

    def __init__(self, intercept_name: str = "intercept", intercept_term: str = "intercept") -> None:
        self._intercept_nt: NameTerm = (intercept_name, intercept_term)
        self._nt_to_index: dict[NameTerm, int] = {}
        self._index_to_nt: list[NameTerm] = []
        # name -> {term -> index}: lets bulk look-ups run in C without building (name, term) tuples
        self._by_name: dict[str, dict[str, int]] = {}
        self.push(self._intercept_nt)

    @property
    def intercept_nt(self) -> NameTerm:
        return self._intercept_nt

    @property
    def intercept_index(self) -> int:
        return self._nt_to_index[self._intercept_nt]

    def push(self, name_term: NameTerm) -> None:
        """Add one name-term; a no-op when it is already indexed."""
        if name_term not in self._nt_to_index:
            index = len(self._index_to_nt)
            self._nt_to_index[name_term] = index
            self._index_to_nt.append(name_term)
            self._by_name.setdefault(name_term[0], {})[name_term[1]] = index

    def batch_push(self, name_terms: Iterable[NameTerm]) -> tuple[int, int]:
        """Add many name-terms; returns (number added, number of distinct name-terms offered)."""
        before = len(self)
        distinct = dict.fromkeys(name_terms)
        for nt in distinct:
            self.push(nt)
        return len(self) - before, len(distinct)

    def get_nt(self, index: int) -> NameTerm:
        if not 0 <= index < len(self._index_to_nt):
            raise UnknownFeatureError(f"index {index} is not in the index map (size {len(self)})")
        return self._index_to_nt[index]

    def get_index(self, name_term: NameTerm) -> int:
        try:
            return self._nt_to_index[name_term]
        except KeyError:
            raise UnknownFeatureError(
                f"name-term {name_term!r} is not in the index map; build the map from the data and "
                "the model (IndexMap.from_records_means_and_variances) or pass unknown='ignore'"
            ) from None

    def get_indices(self, name_terms: Iterable[NameTerm], *, unknown: str = "error") -> np.ndarray:
        """Indices of many name-terms; unknown ones raise, or map to -1 with ``unknown='ignore'``."""
        if unknown not in ("error", "ignore"):
            raise IncrementalInputError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        nts = list(name_terms)
        get = self._nt_to_index.get
        out = np.fromiter((get(nt, -1) for nt in nts), dtype=np.int64, count=len(nts))
        if unknown == "error" and out.size and out.min() < 0:
            self.get_index(nts[int(np.argmin(out))])
        return out

    def lookup_features(self, features: Sequence[Feature]) -> np.ndarray:
        """Column index of each feature (-1 when not indexed), in bulk."""
        names = map(_NAME, features)
        inner = map(self._by_name.get, names, repeat(_EMPTY))
        return np.fromiter(
            map(dict.get, inner, map(_TERM, features), repeat(-1)), dtype=np.int64, count=len(features)
        )

    @property
    def name_terms(self) -> list[NameTerm]:
        return list(self._index_to_nt)

    def __len__(self) -> int:
        return len(self._index_to_nt)

    def __contains__(self, name_term: object) -> bool:
        return name_term in self._nt_to_index

    def __repr__(self) -> str:
        return "[" + "; ".join(f"{k}:{v}" for k, v in self._nt_to_index.items()) + "]"

    @staticmethod
    def from_records_means_and_variances(
        training_records: Iterable[TrainingRecord],
        coefficient_mean: Iterable[Feature],
        coefficient_vars: Iterable[Feature],
    ) -> tuple[IndexMap, dict[str, int]]:
        """Index the model's coefficients first, then the records' features.

        Returns the map and statistics: name-terms in both, only in the coefficients, only in the records.
        """
        imap = IndexMap()
        coeff_nts = [f.name_term for f in coefficient_mean]
        coeff_nts += [f.name_term for f in coefficient_vars]
        n_coeff_added, _ = imap.batch_push(coeff_nts)
        feats = list(chain.from_iterable(map(_FEATURES, training_records)))
        cols = imap.lookup_features(feats)
        missing = np.flatnonzero(cols < 0)
        before = len(imap)
        n_in_both = int(np.count_nonzero(np.bincount(cols[cols >= 0], minlength=len(imap))))
        for i in missing.tolist():  # only the name-terms the model lacks go through Python
            nt = (feats[i].name, feats[i].term)
            imap.push(nt)
            cols[i] = imap._nt_to_index[nt]
        n_record_added = len(imap) - before
        # no memo of this look-up for the next vectorisation: records and features are mutable, and a
        # cache keyed by identity returned stale columns when a record's features changed in between
        return imap, {
            "num_nts_in_both": n_in_both,
            "num_nts_in_coeffs_only": n_coeff_added - n_in_both,
            "num_nts_in_records_only": n_record_added,
        }


class IndexedDataset:
    """Data in the index domain: a sparse design ``X`` (intercept in column 0), labels, weights, offsets."""

    def __init__(
        self,
        data: Any,
        labels: np.ndarray,
        labels_weights: np.ndarray,
        offsets: np.ndarray,
    ) -> None:
        self.X = data
        self.y = np.asarray(labels, dtype=np.float64)
        self.w = np.asarray(labels_weights, dtype=np.float64)
        self.offsets = np.asarray(offsets, dtype=np.float64)
        self.num_rows, self.num_cols = data.shape
        self.num_examples = self.num_rows
        self.num_features = self.num_cols
        for name, arr in (("labels", self.y), ("weights", self.w), ("offsets", self.offsets)):
            if arr.shape != (self.num_rows,):
                raise IncrementalInputError(
                    f"{name} must have one entry per row ({self.num_rows}), got shape {arr.shape}"
                )


class IndexedModel:
    """A model in the index domain: coefficient means ``theta`` and the Hessian (posterior precision).

    ``hessian`` is a scipy sparse matrix or None; :attr:`variance` is ``1 / diag(hessian)``, the
    coefficient variance the name-term round trip keeps.
    """

    def __init__(self, theta: np.ndarray, hessian: sparse.spmatrix | sparse.sparray | None = None) -> None:
        self.theta = np.asarray(theta, dtype=np.float64)
        self.hessian = hessian
        if hessian is not None and hessian.shape != (self.theta.size, self.theta.size):
            raise IncrementalInputError(
                f"hessian shape {hessian.shape} does not match theta of length {self.theta.size}"
            )

    @property
    def precision(self) -> np.ndarray | None:
        """Diagonal of the Hessian (the coefficient precisions), or None."""
        return None if self.hessian is None else np.asarray(self.hessian.diagonal(), dtype=np.float64)

    @property
    def variance(self) -> np.ndarray | None:
        """Coefficient variances, ``1 / diag(hessian)``, or None."""
        prec = self.precision
        return None if prec is None else 1.0 / prec


def _diag(values: np.ndarray) -> sparse.csr_matrix:
    from scipy import sparse

    return sparse.diags(np.asarray(values, dtype=np.float64)).tocsr()


def nt_domain_data_to_index_domain_data(
    records: Sequence[TrainingRecord], index_map: IndexMap, *, unknown: str = "error"
) -> IndexedDataset:
    """Vectorise name-term-value records into a sparse :class:`IndexedDataset` (intercept added).

    ``unknown='ignore'`` drops name-terms the map does not hold (they score 0), instead of raising.
    """
    from scipy import sparse

    if unknown not in ("error", "ignore"):
        raise IncrementalInputError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
    n = len(records)
    # one flat pass with C-level iteration: this conversion dominates the original library's update
    lengths = np.fromiter(map(len, map(_FEATURES, records)), dtype=np.int64, count=n)
    feats = list(chain.from_iterable(map(_FEATURES, records)))
    cols = index_map.lookup_features(feats)
    vals = np.fromiter(map(_VALUE, feats), dtype=np.float64, count=len(feats))
    labels = np.fromiter(map(_LABEL, records), dtype=np.float64, count=n)
    weights = np.fromiter(map(_WEIGHT, records), dtype=np.float64, count=n)
    offsets = np.fromiter(map(_OFFSET, records), dtype=np.float64, count=n)
    rows = np.repeat(np.arange(n), lengths)
    if cols.size and cols.min() < 0:
        if unknown == "error":
            bad = feats[int(np.argmin(cols))]
            index_map.get_index((bad.name, bad.term))
        keep = cols >= 0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    icpt = index_map.intercept_index
    rows = np.concatenate([np.arange(n), rows])
    cols = np.concatenate([np.full(n, icpt, dtype=np.int64), cols])
    vals = np.concatenate([np.ones(n), vals])
    # coo -> csr sums duplicates, as the library's coo -> csc conversion does
    X = sparse.csr_matrix((vals, (rows, cols)), shape=(n, len(index_map)), dtype=np.float64)
    return IndexedDataset(X, labels, weights, offsets)


def nt_domain_coeffs_to_index_domain_coeffs(
    coeff_means: Iterable[Feature],
    coeff_variances: Iterable[Feature],
    index_map: IndexMap,
    regularization_param: float,
) -> IndexedModel:
    """Vectorise a name-term model: coefficients the model lacks get mean 0 and variance 1/penalty."""
    if not regularization_param > 0:
        raise IncrementalInputError(
            f"regularization_param must be > 0 (it sets the prior precision of unseen coefficients), "
            f"got {regularization_param!r}"
        )
    p = len(index_map)
    theta = np.zeros(p)
    for c in coeff_means:
        theta[index_map.get_index(c.name_term)] = c.value
    precision = np.full(p, float(regularization_param))
    for c in coeff_variances:
        if not c.value > 0:
            raise IncrementalInputError(
                f"variance of {c.name_term!r} must be > 0, got {c.value!r}; drop the coefficient "
                "to give it the prior variance 1/penalty"
            )
        precision[index_map.get_index(c.name_term)] = 1.0 / c.value
    return IndexedModel(theta, _diag(precision))


def index_domain_coeffs_to_nt_domain_coeffs(
    model: IndexedModel, index_map: IndexMap
) -> tuple[dict[NameTerm, float], dict[NameTerm, float] | None]:
    """Back to name-terms: ``(means, variances)``; variances are ``1/diag(hessian)`` (None without one)."""
    if model.theta.size != len(index_map):
        raise IncrementalInputError(
            f"model has {model.theta.size} coefficients but the index map {len(index_map)}; "
            "use the map the model was indexed with"
        )
    nts = index_map.name_terms
    means = dict(zip(nts, model.theta.tolist(), strict=True))
    var = model.variance
    variances = None if var is None else dict(zip(nts, var.tolist(), strict=True))
    return means, variances


def features_from_dict(coefficients: dict[NameTerm, float]) -> list[Feature]:
    """``{(name, term): value}`` → ``[Feature(name, term, value), ...]``."""
    return [Feature(n, t, float(v)) for (n, t), v in coefficients.items()]

"""Synthetic game-subscription churn data with real signal (seed ``001``'s four tables).

A character that misses three subscription months in a row has churned. The monthly churn hazard is
``sigmoid(base + class effect + death-ratio effect + price effect + engagement)``; engagement is
hidden but shows in the currency balances, which also sag in the two months before a churn, so a
model that reads currency trends beats one that reads a few raw columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from battleground.errors import ModelError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CHURN_VARIANTS", "build_churn_features", "make_churn_tables", "read_churn_tables", "tables_as_of",
    "write_churn_tables",
]


class ChurnDataError(ModelError, ValueError):
    """Bad arguments or tables for the synthetic churn data."""


class ChurnTablesMissingError(ModelError, FileNotFoundError):
    """The churn tables asked for were never written."""


TABLES = ("characters", "currency", "subscriptions", "sub_miss")
LABEL = "churned"


@dataclass(frozen=True)
class _Variant:
    start: str
    n_months: int
    creation_months: int
    base_hazard: float
    class_effect: dict[str, float]
    class_probs: tuple[float, ...]
    territories: tuple[str, ...]
    price_per_size: dict[str, float]
    engagement_weight: float = 0.9
    death_weight: float = 3.0
    price_weight: float = 0.5
    presag: float = 40.0
    extra: dict[str, float] = field(default_factory=dict)


CHURN_VARIANTS: dict[str, _Variant] = {
    "game": _Variant(
        start="2022-01",
        n_months=24,
        creation_months=12,
        base_hazard=-3.3,
        class_effect={"H": 0.3, "T": -0.3, "R": 0.0, "A": 0.5, "C": -0.5, "W": 0.1},
        class_probs=(0.2, 0.15, 0.2, 0.15, 0.15, 0.15),
        territories=("NA", "EU", "KR", "JP", "SEA"),
        price_per_size={"soft": 4.99, "hard": 9.99, "balanced": 7.49},
    ),
    "game2": _Variant(
        start="2023-01",
        n_months=24,
        creation_months=12,
        base_hazard=-3.0,
        class_effect={"H": -0.4, "T": 0.5, "R": 0.2, "A": -0.2, "C": 0.3, "W": -0.3},
        class_probs=(0.1, 0.25, 0.15, 0.2, 0.2, 0.1),
        territories=("NA", "EU", "BR", "TW"),
        price_per_size={"soft": 2.99, "hard": 12.99, "balanced": 6.99},
        engagement_weight=1.1,
        death_weight=2.0,
        price_weight=0.8,
    ),
}


def _month_starts(start: str, offsets: np.ndarray) -> np.ndarray:
    return (np.datetime64(start, "M") + offsets.astype("int64")).astype("datetime64[D]")


def make_churn_tables(
    n_characters: int = 10_000,
    *,
    seed: int = 0,
    variant: Literal["game", "game2"] = "game",
) -> dict[str, pd.DataFrame]:
    """Generate the four churn tables: ``characters``, ``currency``, ``subscriptions``, ``sub_miss``.

    Vectorised NumPy throughout, so one million characters take seconds, not minutes.

    Example:
        >>> t = make_churn_tables(200, seed=1)
        >>> sorted(t)
        ['characters', 'currency', 'sub_miss', 'subscriptions']
        >>> list(t["characters"].columns)[:4]
        ['char_id', 'gender', 'race', 'class']
    """
    import pandas as pd

    if variant not in CHURN_VARIANTS:
        raise ChurnDataError(f"variant={variant!r} is unknown; valid variants: {sorted(CHURN_VARIANTS)}")
    if int(n_characters) < 1:
        raise ChurnDataError(f"n_characters={n_characters!r} must be a positive integer")
    p = CHURN_VARIANTS[variant]
    rng = np.random.default_rng(seed)
    n = int(n_characters)
    char_id = np.arange(1, n + 1, dtype=np.int64)
    classes = np.array(list(p.class_effect))

    created_m = rng.integers(0, p.creation_months, n)
    creation_date = _month_starts(p.start, created_m) + rng.integers(0, 28, n).astype("timedelta64[D]")
    gender = rng.choice(np.array(["M", "F", "N"]), n, p=[0.48, 0.47, 0.05])
    race = rng.choice(np.array(list("ABCDE")), n)
    cls_idx = rng.choice(len(classes), n, p=np.array(p.class_probs) / sum(p.class_probs))
    cls = classes[cls_idx]
    territory = rng.choice(np.array(p.territories), n)
    skill = rng.normal(0.0, 1.0, n)
    activity = rng.gamma(2.0, 1.0, n)
    age_days = (np.datetime64(p.start, "M") + p.n_months).astype("datetime64[D]") - creation_date
    fights = rng.poisson(activity * age_days.astype("int64") * 2.0) + 1
    p_kill = 1.0 / (1.0 + np.exp(-0.8 * skill))
    total_kills = rng.binomial(fights, p_kill)
    total_deaths = fights - total_kills
    mastery_delay = rng.gamma(2.0, 60.0 / (1.0 + np.exp(skill)), n).astype("int64") + 7
    class_mastery_date = (creation_date + mastery_delay.astype("timedelta64[D]")).astype("datetime64[ns]")

    sub_type = rng.choice(np.array(["soft", "hard", "balanced"]), n, p=[0.4, 0.25, 0.35])
    sub_size = rng.choice(np.array([1, 2, 3]), n, p=[0.5, 0.3, 0.2])
    sub_months = rng.choice(np.array([1, 3, 6, 12]), n, p=[0.4, 0.3, 0.2, 0.1])
    unit = np.vectorize(p.price_per_size.__getitem__)(sub_type)
    price = np.round(unit * sub_size * (1.0 - 0.02 * sub_months) * rng.uniform(0.85, 1.15, n), 2)
    hard_share = np.select([sub_type == "hard", sub_type == "soft"], [0.8, 0.2], 0.5)
    num_hard = np.round(100 * sub_size * hard_share).astype(np.int64)
    num_soft = np.round(1000 * sub_size * (1 - hard_share)).astype(np.int64)

    # the hidden churn risk: class, death ratio (non-linear), price paid per unit of currency, engagement
    death_ratio = total_deaths / (total_kills + total_deaths)
    engagement = rng.normal(0.0, 1.0, n)
    value = price / (num_hard / 100 + num_soft / 1000)
    price_z = (value - value.mean()) / (value.std() + 1e-9)
    class_eff = np.array([p.class_effect[c] for c in classes])[cls_idx]
    risk = (
        class_eff
        + p.death_weight * np.clip(death_ratio - 0.55, 0.0, None) / 0.2
        + p.price_weight * price_z
        - p.engagement_weight * engagement
    )
    hazard = 1.0 / (1.0 + np.exp(-(p.base_hazard + risk)))
    churn_m = created_m + rng.geometric(hazard)  # first missed month of the 3-month run

    # monthly currency rows from the month after creation until the churn month (or the window end)
    first = created_m + 1
    last = np.minimum(churn_m, p.n_months - 1)
    counts = np.clip(last - first + 1, 0, None)
    rows = np.repeat(np.arange(n), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    month = np.repeat(first, counts) + (np.arange(rows.size) - starts)
    k = month - created_m[rows]
    to_churn = churn_m[rows] - month
    sag = np.where(to_churn <= 2, (3 - to_churn) * p.presag, 0.0)
    slope_h = 20.0 * engagement + 8.0 + rng.normal(0.0, 10.0, n)
    slope_s = 150.0 * engagement + 60.0 + rng.normal(0.0, 120.0, n)
    hard_balance = np.clip(
        rng.gamma(2.0, 60.0, n)[rows] + slope_h[rows] * k - sag + rng.normal(0, 25.0, rows.size), 0, None
    )
    soft_balance = np.clip(
        rng.gamma(2.0, 500.0, n)[rows] + slope_s[rows] * k - 8 * sag + rng.normal(0, 200.0, rows.size), 0, None
    )

    # sporadic 1-2 month misses (noise, a little more likely for risky characters), never touching churn
    span = churn_m - created_m - 3
    sporadic = (rng.random(n) < 0.10 + 0.15 / (1 + np.exp(-risk))) & (span >= 1)
    sp_len = rng.integers(1, 3, n)
    sp_start = created_m + 1 + (rng.random(n) * np.clip(span, 1, None)).astype(np.int64)
    sp_ok = sporadic & (sp_start + sp_len < churn_m) & (sp_start < p.n_months)
    missed = (
        (month >= churn_m[rows])
        | (sp_ok[rows] & (month >= sp_start[rows]) & (month < sp_start[rows] + sp_len[rows]))
    )
    sub_hard = np.where(missed, 0, num_hard[rows])
    sub_soft = np.where(missed, 0, num_soft[rows])

    window_end = (np.datetime64(p.start, "M") + p.n_months).astype("datetime64[D]") - np.timedelta64(1, "D")
    churned = churn_m < p.n_months
    miss_sub = np.concatenate([char_id[churned], char_id[sp_ok]])
    miss_start_m = np.concatenate([churn_m[churned], sp_start[sp_ok]])
    miss_len = np.concatenate([np.full(int(churned.sum()), 3), sp_len[sp_ok]])
    miss_end = np.minimum(_month_starts(p.start, miss_start_m + miss_len) - np.timedelta64(1, "D"), window_end)
    order = np.lexsort((miss_start_m, miss_sub))

    characters = pd.DataFrame(
        {
            "char_id": char_id,
            "gender": gender,
            "race": race,
            "class": cls,
            "territory": territory,
            "creation_date": creation_date.astype("datetime64[ns]"),
            "class_mastery_date": class_mastery_date,
            "total_kills": total_kills.astype(np.int64),
            "total_deaths": total_deaths.astype(np.int64),
        }
    )
    currency = pd.DataFrame(
        {
            "char_id": char_id[rows],
            "date": _month_starts(p.start, month).astype("datetime64[ns]"),
            "hard_balance": np.round(hard_balance, 1),
            "soft_balance": np.round(soft_balance, 1),
            "sub_hard": sub_hard.astype(np.int64),
            "sub_soft": sub_soft.astype(np.int64),
        }
    )
    subscriptions = pd.DataFrame(
        {
            "sub_id": char_id,
            "char_id": char_id,
            "sub_start_date": creation_date.astype("datetime64[ns]"),
            "sub_type": sub_type,
            "sub_months": sub_months.astype(np.int64),
            "sub_size": sub_size.astype(np.int64),
            "price": price,
            "num_hard_currency": num_hard,
            "num_soft_currency": num_soft,
        }
    )
    sub_miss = pd.DataFrame(
        {
            "sub_id": miss_sub[order],
            "start_date": _month_starts(p.start, miss_start_m[order]).astype("datetime64[ns]"),
            "end_date": miss_end[order].astype("datetime64[ns]"),
        }
    )
    return {"characters": characters, "currency": currency, "subscriptions": subscriptions, "sub_miss": sub_miss}


def write_churn_tables(
    tables: dict[str, pd.DataFrame], folder: str | Path, *, fmt: Literal["parquet", "csv"] = "parquet"
) -> dict[str, Path]:
    """Write each table to ``<folder>/<name>.<fmt>``; returns the paths."""
    if fmt not in ("parquet", "csv"):
        raise ChurnDataError(f"fmt={fmt!r} is not supported; use 'parquet' or 'csv'")
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise ChurnDataError(f"tables is missing {missing}; expected the keys {list(TABLES)}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in TABLES:
        path = out / f"{name}.{fmt}"
        if fmt == "parquet":
            tables[name].to_parquet(path, index=False)
        else:
            tables[name].to_csv(path, index=False)
        paths[name] = path
    return paths


def read_churn_tables(folder: str | Path, *, fmt: Literal["parquet", "csv"] | None = None) -> dict[str, pd.DataFrame]:
    """Read the four tables from ``folder`` (as :func:`write_churn_tables` writes them).

    ``fmt`` reads only that format; ``None`` prefers Parquet over CSV per table. CSV date columns are
    parsed as dates."""
    import pandas as pd

    if fmt not in (None, "parquet", "csv"):
        raise ChurnDataError(f"fmt={fmt!r} is not supported; use 'parquet', 'csv' or None")
    out = Path(folder)
    tables: dict[str, pd.DataFrame] = {}
    dates = {"characters": ["creation_date", "class_mastery_date"], "currency": ["date"],
             "subscriptions": ["sub_start_date"], "sub_miss": ["start_date", "end_date"]}
    for name in TABLES:
        if fmt != "csv" and (out / f"{name}.parquet").exists():
            tables[name] = pd.read_parquet(out / f"{name}.parquet")
        elif fmt != "parquet" and (out / f"{name}.csv").exists():
            tables[name] = pd.read_csv(out / f"{name}.csv", parse_dates=dates[name])
        else:
            wanted = f"{out / name}.{fmt}" if fmt else f"{out / name}.parquet (or .csv)"
            raise ChurnTablesMissingError(f"{wanted} not found; write the four tables {list(TABLES)} there "
                                          "(write_churn_tables or the sub_churn_raw pipeline)")
        missing = [c for c in dates[name] if c not in tables[name].columns]
        if missing:
            raise ChurnDataError(f"table {name!r} in {out} lacks the columns {missing}")
    return tables


def tables_as_of(tables: dict[str, pd.DataFrame], cutoff: str | pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The four tables as they stood on ``cutoff``: what a production batch job would see.

    Characters and subscriptions created on or after the cut-off are dropped, currency rows dated on
    or after it too, mastery dates after it are unknown (``NaT``), and a miss still running at the
    cut-off ends the day before it (a churn run in progress is not known to be one yet).

    Example:
        >>> t = make_churn_tables(300, seed=2)
        >>> past = tables_as_of(t, "2022-10-01")
        >>> bool((past["currency"]["date"] < "2022-10-01").all())
        True
    """
    import pandas as pd

    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise ChurnDataError(f"tables is missing {missing}; expected the keys {list(TABLES)}")
    cut = pd.Timestamp(cutoff)
    chars = tables["characters"]
    chars = chars[chars["creation_date"] < cut].copy()
    chars["class_mastery_date"] = chars["class_mastery_date"].where(chars["class_mastery_date"] < cut)
    subs = tables["subscriptions"]
    miss = tables["sub_miss"]
    miss = miss[miss["start_date"] < cut].copy()
    last_day = cut - pd.Timedelta(days=1)
    miss["end_date"] = miss["end_date"].where(miss["end_date"] <= last_day, last_day)
    cur = tables["currency"]
    return {
        "characters": chars.reset_index(drop=True),
        "currency": cur[cur["date"] < cut].reset_index(drop=True),
        "subscriptions": subs[subs["sub_start_date"] < cut].reset_index(drop=True),
        "sub_miss": miss.reset_index(drop=True),
    }


def _month_index(values: pd.Series) -> np.ndarray:
    return (values.dt.year * 12 + values.dt.month - 1).to_numpy(dtype=np.int64)


def build_churn_features(
    tables: dict[str, pd.DataFrame],
    cutoff: str | pd.Timestamp,
    *,
    horizon_months: int = 3,
    with_label: bool = True,
) -> pd.DataFrame:
    """One row per character alive at ``cutoff``, with features from data strictly before it.

    The population is what was knowable at ``cutoff``: the characters created before it, less those
    whose churn (three whole missed months) was complete before it. A run still in progress at the
    cut-off is not known to be a churn yet, so that character stays, exactly as in
    :func:`tables_as_of` (batch predict and batch score see the same rows). The label ``churned`` is 1
    when the character's churn run starts before ``cutoff + horizon_months`` (a run in progress
    included). Usable as a Kedro node: tables + cut-off in, frame out.

    Example:
        >>> t = make_churn_tables(300, seed=2)
        >>> f = build_churn_features(t, "2022-10-01")
        >>> {"char_id", "class", "hard_trend_3m", "churned"} <= set(f.columns)
        True
    """
    import pandas as pd

    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise ChurnDataError(f"tables is missing {missing}; expected the keys {list(TABLES)}")
    if int(horizon_months) < 1:
        raise ChurnDataError(f"horizon_months={horizon_months!r} must be at least 1")
    cut = pd.Timestamp(cutoff)
    cut_m = cut.year * 12 + cut.month - 1
    chars = tables["characters"]
    subs = tables["subscriptions"]
    miss = tables["sub_miss"]
    cur = tables["currency"]

    alive = chars[chars["creation_date"] < cut]
    # churn run start per character: a miss spanning three whole months. It is known to be a churn
    # only once its third month has passed, so a run still in progress at the cut-off keeps the
    # character in the population (as in tables_as_of, which cuts that run back to the cut-off)
    three = miss["end_date"] >= miss["start_date"] + pd.DateOffset(months=3) - pd.Timedelta(days=1)
    runs = miss.loc[three, ["sub_id", "start_date"]].merge(subs[["sub_id", "char_id"]], on="sub_id")
    churn_start = runs.groupby("char_id")["start_date"].min()
    start = alive["char_id"].map(churn_start)
    alive = alive[~(start + pd.DateOffset(months=3) <= cut).to_numpy()]
    if alive.empty:
        raise ChurnDataError(
            f"cutoff={str(cut.date())!r} leaves no living characters; pick a date after the first creation "
            f"date {chars['creation_date'].min().date()}"
        )
    ids = alive["char_id"].to_numpy()
    index = pd.Index(ids)

    out = pd.DataFrame({"char_id": ids})
    for col in ("gender", "race", "class", "territory"):
        out[col] = alive[col].to_numpy()
    out["account_age_days"] = (cut - alive["creation_date"]).dt.days.to_numpy()
    mastered = (alive["class_mastery_date"] < cut).to_numpy()
    out["mastered"] = mastered.astype(np.int64)
    out["days_since_mastery"] = np.where(mastered, (cut - alive["class_mastery_date"]).dt.days.to_numpy(), np.nan)
    out["total_kills"] = alive["total_kills"].to_numpy()
    out["total_deaths"] = alive["total_deaths"].to_numpy()
    out["death_ratio"] = out["total_deaths"] / (out["total_kills"] + out["total_deaths"]).clip(lower=1)

    s = subs[subs["char_id"].isin(ids)].drop_duplicates("char_id", keep="last").set_index("char_id").reindex(index)
    for col in ("sub_type", "sub_months", "sub_size", "price", "num_hard_currency", "num_soft_currency"):
        out[col] = s[col].to_numpy()
    out["sub_age_days"] = (cut - s["sub_start_date"]).dt.days.to_numpy()

    # currency: the last four monthly snapshots before the cut-off
    c = cur[(cur["date"] < cut) & (cur["date"] >= cut - pd.DateOffset(months=4))]
    pos = index.get_indexer(c["char_id"])
    keep = pos >= 0
    pos = pos[keep]
    lag = cut_m - _month_index(c["date"])[keep]  # 1 = the month just before the cut-off
    for name in ("hard_balance", "soft_balance", "sub_hard", "sub_soft"):
        grid = np.full((len(ids), 4), np.nan)
        grid[pos, lag - 1] = c[name].to_numpy()[keep]
        if name.endswith("balance"):
            prefix = name.split("_")[0]
            out[f"{prefix}_balance"] = grid[:, 0]
            out[f"{prefix}_trend_1m"] = grid[:, 0] - grid[:, 1]
            out[f"{prefix}_trend_3m"] = grid[:, 0] - grid[:, 3]
        else:
            out[f"{name}_4m"] = np.nansum(grid, axis=1)

    # misses before the cut-off (a miss still running at the cut-off counts up to the cut-off only)
    m = miss[miss["start_date"] < cut].merge(subs[["sub_id", "char_id"]], on="sub_id")
    mpos = index.get_indexer(m["char_id"])
    ok = mpos >= 0
    end_m = np.minimum(_month_index(m["end_date"]), cut_m - 1)[ok]
    months_missed = end_m - _month_index(m["start_date"])[ok] + 1
    out["missed_months"] = np.bincount(mpos[ok], weights=months_missed, minlength=len(ids)).astype(np.int64)
    last_miss = np.full(len(ids), -1, dtype=np.int64)
    np.maximum.at(last_miss, mpos[ok], end_m)
    out["months_since_miss"] = np.where(last_miss >= 0, cut_m - last_miss, np.nan)

    if with_label:
        horizon_end = cut + pd.DateOffset(months=int(horizon_months))
        window_end = cur["date"].max()
        if horizon_end > window_end + pd.DateOffset(months=1):
            raise ChurnDataError(
                f"cutoff={str(cut.date())!r} + horizon_months={horizon_months} runs past the data "
                f"(last month {window_end.date()}); pick an earlier cut-off or set with_label=False"
            )
        st = alive["char_id"].map(churn_start)  # a run in progress at the cut-off counts as a churn
        out[LABEL] = (st < horizon_end).to_numpy().astype(np.int64)
    return out

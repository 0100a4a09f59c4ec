"""The decision log: every decision a decision service made, and the outcomes attached to it.

Three tables live beside ``events`` in the event store (the DuckDB file or the PostgreSQL database),
created on first use, with the same rules as events: one transaction per batch, idempotent on a key,
first write wins.

* ``decisions``, keyed on ``decision_id``: who (unit), under which policy (key, version) and experiment
  (id, variant), what was seen (context, JSON text), what was done (action) with which probability
  (propensity), whether the row may train the policy (``trains``: false in a control slice), when, and
  ``seq`` (increasing, from a sequence).
* ``decision_rewards``, keyed on ``decision_id``: the outcome, with its own ``seq`` (the updater's
  watermark: rewards arrive in any order).
* ``decision_exposures``, keyed on ``(experiment_id, unit_id)``: the first decision of a unit in an
  experiment; the same transaction writes its ``exposure`` event (event id ``exposure:<exp>:<unit>``,
  as :class:`battleground.experiment.assign.Assigner` does), and a reward of a decision in an experiment
  writes a ``reward`` event (event id ``reward:<decision id>``), so the A/B statistics see both.

A batch is written in one transaction: a crash before its commit leaves nothing; after the commit
(when the service acknowledges) everything. Re-sending a batch stores nothing twice.

Outcomes come two ways, into the same ``decision_rewards`` row (so a decision never has two):
``POST /reward`` (:meth:`DecisionLog.reward`), or ordinary ingested events matched to decisions by
time window (:meth:`DecisionLog.match_events`, one ``INSERT … SELECT`` on both backends, rules in
:class:`RewardRule`). Whichever is stored first is kept.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from battleground.errors import StorageError

if TYPE_CHECKING:
    from battleground.storage.events import EventStore

__all__ = [
    "DecisionLog",
    "DecisionRow",
    "LoggedDecisions",
    "RewardRow",
    "RewardRule",
    "open_decision_log",
]

REWARD_EVENT = "reward"
REWARD_VALUES = ("sum", "any")
DECISION_COLUMNS = ("decision_id", "policy", "experiment_id", "variant", "unit_id", "context", "action",
                    "propensity", "policy_version", "trains", "ts")

_SCHEMA = (
    "CREATE SEQUENCE IF NOT EXISTS decision_seq",
    "CREATE SEQUENCE IF NOT EXISTS decision_reward_seq",
    """CREATE TABLE IF NOT EXISTS decisions (
        decision_id {text} PRIMARY KEY,
        seq BIGINT NOT NULL DEFAULT nextval('decision_seq'),
        policy {text} NOT NULL,
        experiment_id INTEGER,
        variant {text},
        unit_id {text} NOT NULL,
        context {text} NOT NULL,
        action INTEGER NOT NULL,
        propensity DOUBLE PRECISION NOT NULL,
        policy_version INTEGER NOT NULL,
        trains BOOLEAN NOT NULL,
        ts TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS decision_rewards (
        decision_id {text} PRIMARY KEY,
        seq BIGINT NOT NULL DEFAULT nextval('decision_reward_seq'),
        reward DOUBLE PRECISION NOT NULL,
        ts TIMESTAMP NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS decision_exposures (
        experiment_id INTEGER NOT NULL,
        unit_id {text} NOT NULL,
        PRIMARY KEY (experiment_id, unit_id)
    )""",
)


class DecisionLogError(StorageError, ValueError):
    """A decision or reward the log cannot store (an id reused for another decision, an unknown id)."""


@dataclass(frozen=True)
class DecisionRow:
    """One logged decision (``context`` as a tuple of floats; ``experiment_id``/``variant`` ``None``
    when the policy runs outside an experiment)."""

    decision_id: str
    policy: str
    experiment_id: int | None
    variant: str | None
    unit_id: str
    context: tuple[float, ...]
    action: int
    propensity: float
    policy_version: int
    trains: bool
    ts: dt.datetime

    def same_decision(self, other: DecisionRow) -> bool:
        """Whether ``other`` is this decision re-sent (same unit, policy and experiment)."""
        return (self.unit_id, self.policy, self.experiment_id) == (other.unit_id, other.policy, other.experiment_id)

    def to_dict(self) -> dict[str, Any]:
        return {"decision_id": self.decision_id, "policy": self.policy, "experiment_id": self.experiment_id,
                "variant": self.variant, "unit_id": self.unit_id, "action": self.action,
                "propensity": self.propensity, "policy_version": self.policy_version, "trains": self.trains,
                "ts": self.ts.isoformat()}


@dataclass(frozen=True)
class RewardRow:
    """An outcome for a logged decision."""

    decision_id: str
    reward: float
    ts: dt.datetime


@dataclass(frozen=True)
class RewardRule:
    """How ingested events become the rewards of decisions (:meth:`DecisionLog.match_events`).

    An event of type ``event_type`` of the decision's unit (in the decision's experiment, or in any
    experiment for a decision outside one) belongs to the **latest decision of that unit before it**
    (same policy key and experiment; an event at the very time of a decision belongs to it), if it
    came less than ``window`` seconds after that decision. So with two decisions of a unit inside one
    window, the events after the second are the second's; events before a unit's first decision, or
    later than ``window`` after its latest one, belong to no decision and are ignored. The events the
    log itself writes for ``POST /reward`` (ids ``reward:<decision id>``) are never matched.

    A decision's reward is settled once its window is over (``window`` seconds passed, or the unit's
    next decision came): ``value="sum"`` adds the values of its events (an event without a value
    counts 1, as in a mean metric), ``"any"`` is 1 when it had an event and 0 otherwise (a
    proportion); a decision without events gets 0. ``window=None``: until the unit's next decision
    (then only ``final`` settles the latest one, e.g. when the experiment stops).

    >>> RewardRule("purchase", 3600.0).value
    'sum'
    """

    event_type: str
    window: float | None = 3600.0
    value: str = "sum"

    def __post_init__(self) -> None:
        if not isinstance(self.event_type, str) or not self.event_type.strip() or len(self.event_type) > 200:
            raise DecisionLogError(f"reward event_type must be an event type of 1 to 200 characters, got {self.event_type!r}")
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int | float)
                                        or not 0 < float(self.window) < 1e10):
            raise DecisionLogError(f"reward window must be a number of seconds > 0 (or None), got {self.window!r}")
        if self.value not in REWARD_VALUES:
            raise DecisionLogError(f"reward value must be one of {REWARD_VALUES}, got {self.value!r}")


@dataclass(frozen=True)
class LoggedDecisions:
    """Logged decisions as arrays (one entry per decision), ordered by ``seq``; ``reward`` is NaN
    where no outcome is attached, ``reward_seq`` −1 there."""

    decision_id: np.ndarray
    unit_id: np.ndarray
    variant: np.ndarray
    context: np.ndarray  # (n, d) float64
    action: np.ndarray
    propensity: np.ndarray
    policy_version: np.ndarray
    trains: np.ndarray
    reward: np.ndarray
    reward_seq: np.ndarray
    seq: np.ndarray

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def rewarded(self) -> LoggedDecisions:
        """Only the decisions with an outcome."""
        return self.where(~np.isnan(self.reward))

    def where(self, mask: np.ndarray) -> LoggedDecisions:
        return LoggedDecisions(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})


def _reward_outcome(stored: float, given: float) -> str:
    return "duplicate" if stored == given else "conflict"


class DecisionLog:
    """The decision log of one event store. Thread-safe; one writer thread should do the writes.

    :meth:`session` holds the store for a burst of batches in one thread (the DuckDB file stays open, a
    PostgreSQL connection is kept); :meth:`hold` keeps it for a long-lived writer while other threads
    may still use it; every other method works inside or outside either.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.backend = store.backend
        self._local = threading.local()
        self._ready: set[int] = set()
        # units known to be exposed (committed): their decisions skip the exposure insert
        self._exposed: set[tuple[int, str]] = set()

    # ------------------------------------------------------------------ connections
    @contextmanager
    def session(self) -> Iterator[Any]:
        """One open connection for the ``with`` block (nested calls in this thread reuse it)."""
        held = getattr(self._local, "con", None)
        if held is not None:
            yield held
            return
        with self._open() as con:
            self._ensure_schema(con)
            self._local.con = con
            try:
                yield con
            finally:
                self._local.con = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the store for a long-lived writer (the ``with`` block): the DuckDB file stays locked and
        open for this process (:meth:`DuckDBEventStore.pin`: each operation of any thread still runs
        alone, on the open connection), a PostgreSQL connection stays open in this thread."""
        if self.backend == "duckdb":
            with self.store.pin():  # type: ignore[attr-defined]
                yield
        else:
            with self.session():
                yield

    @contextmanager
    def _open(self) -> Iterator[Any]:
        if self.backend == "duckdb":
            with self.store.connection() as con:  # type: ignore[attr-defined]
                yield con
            return
        import psycopg

        from battleground.storage._pg import classify_error

        try:
            conn = self.store._connect()  # type: ignore[attr-defined]
            conn.autocommit = True
        except psycopg.Error as exc:
            raise classify_error(exc, where="the decision log (PostgreSQL)", writing=False) from exc
        try:
            yield conn
        except psycopg.Error as exc:
            raise classify_error(exc, where="the decision log (PostgreSQL)", writing=True) from exc
        finally:
            conn.close()

    def _ensure_schema(self, con: Any) -> None:
        if id(con) in self._ready:
            return
        text = "VARCHAR" if self.backend == "duckdb" else 'VARCHAR COLLATE "C"'
        if self.backend == "duckdb":
            for stmt in _SCHEMA:
                con.execute(stmt.format(text=text))
        else:
            import psycopg

            try:
                with con.transaction():
                    con.execute("SELECT pg_advisory_xact_lock(7311402024)")
                    for stmt in _SCHEMA:
                        con.execute(stmt.format(text=text))
            except psycopg.errors.InsufficientPrivilege:
                # a role without DDL rights uses the tables the owner made; what it may not do fails later
                if con.execute("SELECT to_regclass('decision_exposures')").fetchone() == (None,):
                    raise
        self._ready.add(id(con))

    def _rows(self, con: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.backend == "duckdb":
            return con.execute(sql, list(params)).fetchall()  # type: ignore[no-any-return]
        return con.execute(sql.replace("?", "%s"), tuple(params)).fetchall()  # type: ignore[no-any-return]

    @contextmanager
    def _transaction(self, con: Any) -> Iterator[None]:
        if self.backend == "duckdb":
            con.execute("BEGIN TRANSACTION")
            try:
                yield
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                raise
        else:
            with con.transaction():
                yield

    # ------------------------------------------------------------------ writes
    def log(self, rows: Sequence[DecisionRow]) -> list[tuple[DecisionRow, bool]]:
        """Store decisions in one transaction. Returns per row the stored decision and whether it was new;
        a re-sent id returns the decision stored first (its action and propensity), so a client that
        retries always hears the same answer. Exposures of units new to an experiment are written in
        the same transaction."""
        if not rows:
            return []
        first: dict[str, DecisionRow] = {}
        for r in rows:
            first.setdefault(r.decision_id, r)
        unique = list(first.values())
        with self.session() as con:
            if self.backend == "duckdb":
                inserted, exposed_now = self._log_duckdb(con, unique)
            else:
                inserted, exposed_now = self._log_postgres(con, unique)
            stored = {r.decision_id: r for r in unique if r.decision_id in inserted}
            for r in unique:
                if r.decision_id not in stored:
                    found = self._get(con, r.decision_id)
                    if found is not None:
                        stored[r.decision_id] = found
        if len(self._exposed) > 1_000_000:
            self._exposed.clear()
        self._exposed.update(exposed_now)  # committed: these units need no exposure check again
        out = []
        for r in rows:
            s = stored[r.decision_id]
            out.append((s, r.decision_id in inserted and first[r.decision_id] is r))
        return out

    def _to_expose(self, rows: Sequence[DecisionRow]) -> list[DecisionRow]:
        """The rows whose unit may be new to its experiment (not yet known exposed in this process)."""
        return [r for r in rows if r.experiment_id is not None and (r.experiment_id, r.unit_id) not in self._exposed]

    def _log_duckdb(self, con: Any, rows: Sequence[DecisionRow]) -> tuple[set[str], list[tuple[int, str]]]:
        """One transaction; first optimistically (a plain insert: a fresh id is the rule, and DuckDB's
        ``ON CONFLICT … RETURNING`` costs more than the insert), then, when an id is already stored,
        again with the conflict check."""
        import duckdb

        for optimistic in (True, False):
            try:
                with self._transaction(con):
                    if optimistic:
                        self._insert_decisions(con, rows, check=False)
                        inserted = {r.decision_id for r in rows}
                    else:
                        inserted = self._insert_decisions(con, rows)
                    exposed = self._to_expose([r for r in rows if r.decision_id in inserted])
                    return inserted, self._expose(con, exposed) if exposed else []
            except duckdb.ConstraintException:
                if not optimistic:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _log_postgres(self, con: Any, rows: Sequence[DecisionRow]) -> tuple[set[str], list[tuple[int, str]]]:
        """One statement (so one round trip and its own transaction): the decisions, the exposures of
        units new to their experiment and their exposure events, in data-modifying CTEs."""
        expose = {r.decision_id for r in self._to_expose(rows)}
        cols = ", ".join(DECISION_COLUMNS)
        types = ("text", "text", "int", "text", "text", "text", "int", "float8", "int", "bool", "timestamp", "bool")
        values = [*self._decision_values(rows), [r.decision_id in expose for r in rows]]
        sql = f"""
            WITH b AS (
                SELECT * FROM unnest({", ".join(f"%s::{t}[]" for t in types)})
                    WITH ORDINALITY AS b({cols}, expose, ord)
            ), ins AS (
                INSERT INTO decisions ({cols}) SELECT {cols} FROM b
                ON CONFLICT (decision_id) DO NOTHING RETURNING decision_id
            ), firsts AS (
                SELECT DISTINCT ON (b.experiment_id, b.unit_id) b.experiment_id, b.unit_id, b.variant, b.ts
                FROM b JOIN ins USING (decision_id) WHERE b.expose
                ORDER BY b.experiment_id, b.unit_id, b.ord
            ), exp AS (
                INSERT INTO decision_exposures (experiment_id, unit_id) SELECT experiment_id, unit_id FROM firsts
                ON CONFLICT (experiment_id, unit_id) DO NOTHING RETURNING experiment_id, unit_id
            ), ev AS (
                INSERT INTO events (event_id, experiment_id, variant, user_id, event_type, ts, value)
                SELECT 'exposure:' || f.experiment_id || ':' || f.unit_id, f.experiment_id, coalesce(f.variant, ''),
                       f.unit_id, 'exposure', f.ts, NULL
                FROM exp JOIN firsts f USING (experiment_id, unit_id)
                ON CONFLICT (experiment_id, event_id) DO NOTHING
            )
            SELECT decision_id FROM ins"""
        inserted = {str(g[0]) for g in con.execute(sql, values).fetchall()}
        return inserted, [(int(r.experiment_id), r.unit_id) for r in rows  # type: ignore[arg-type]
                          if r.decision_id in expose and r.decision_id in inserted]

    def _insert(self, con: Any, table: str, columns: Sequence[str], types: Sequence[str],
                values: Sequence[Sequence[Any]], *, conflict: str = "", returning: str = "") -> list[tuple[Any, ...]]:
        """One ``INSERT … SELECT`` of column lists (an Arrow table for DuckDB, ``unnest`` of arrays for
        PostgreSQL), ``ON CONFLICT (conflict) DO NOTHING`` and ``RETURNING returning`` when given."""
        cols = ", ".join(columns)
        tail = (f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else "") + (f" RETURNING {returning}" if returning else "")
        if self.backend == "duckdb":
            # parameterised VALUES: a few rows per group commit, where registering an Arrow table cost
            # more than the insert itself (10:30 profile: 14 ms of a 25 ms batch)
            n = len(values[0])
            row = "(" + ", ".join("?" * len(columns)) + ")"
            params = [v for r in zip(*values, strict=True) for v in r]
            cur = con.execute(f"INSERT INTO {table} ({cols}) VALUES {', '.join([row] * n)}{tail}", params)
            return cur.fetchall() if returning else []  # type: ignore[no-any-return]
        unnest = ", ".join(f"%s::{t}[]" for t in types)
        cur = con.execute(f"INSERT INTO {table} ({cols}) SELECT * FROM unnest({unnest}){tail}", [list(v) for v in values])
        return cur.fetchall() if returning else []  # type: ignore[no-any-return]

    @staticmethod
    def _decision_values(rows: Sequence[DecisionRow]) -> list[list[Any]]:
        """The columns of :data:`DECISION_COLUMNS` for ``rows``."""
        return [
            [r.decision_id for r in rows], [r.policy for r in rows], [r.experiment_id for r in rows],
            [r.variant for r in rows], [r.unit_id for r in rows],
            [json.dumps(list(r.context)) for r in rows], [int(r.action) for r in rows],
            [float(r.propensity) for r in rows], [int(r.policy_version) for r in rows],
            [bool(r.trains) for r in rows], [r.ts for r in rows],
        ]

    def _insert_decisions(self, con: Any, rows: Sequence[DecisionRow], *, check: bool = True) -> set[str]:
        """Insert ``rows``; with ``check``, skip ids already stored and return the ids inserted."""
        types = ["text", "text", "int", "text", "text", "text", "int", "float8", "int", "bool", "timestamp"]
        got = self._insert(con, "decisions", DECISION_COLUMNS, types, self._decision_values(rows),
                           conflict="decision_id" if check else "", returning="decision_id" if check else "")
        return {str(g[0]) for g in got}

    def _expose(self, con: Any, rows: Sequence[DecisionRow]) -> list[tuple[int, str]]:
        """Exposure events of the units seen for the first time in their experiment; returns the units
        checked (all of them are exposed once the transaction commits)."""
        firsts: dict[tuple[int, str], DecisionRow] = {}
        for r in rows:
            assert r.experiment_id is not None
            firsts.setdefault((r.experiment_id, r.unit_id), r)
        got = self._insert(con, "decision_exposures", ("experiment_id", "unit_id"), ("int", "text"),
                           [[k[0] for k in firsts], [k[1] for k in firsts]], conflict="experiment_id, unit_id",
                           returning="experiment_id, unit_id")
        new = [firsts[int(e), str(u)] for e, u in got]
        self._events(con, [(f"exposure:{r.experiment_id}:{r.unit_id}", r.experiment_id, r.variant or "",
                            r.unit_id, "exposure", r.ts, None) for r in new])
        return list(firsts)

    def _events(self, con: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert event rows ``(event_id, experiment_id, variant, user_id, event_type, ts, value)``; on
        PostgreSQL an id already stored is skipped (its key), on DuckDB the callers guarantee new ids."""
        if not rows:
            return
        columns = ("event_id", "experiment_id", "variant", "user_id", "event_type", "ts", "value")
        types = ("text", "int", "text", "text", "text", "timestamp", "float8")
        self._insert(con, "events", columns, types, [list(c) for c in zip(*rows, strict=True)],
                     conflict="" if self.backend == "duckdb" else "experiment_id, event_id")

    def _get(self, con: Any, decision_id: str) -> DecisionRow | None:
        cols = ", ".join(DECISION_COLUMNS)
        found = self._rows(con, f"SELECT {cols} FROM decisions WHERE decision_id = ?", (decision_id,))
        if not found:
            return None
        r = found[0]
        return DecisionRow(str(r[0]), str(r[1]), None if r[2] is None else int(r[2]), r[3], str(r[4]),
                           tuple(json.loads(r[5])), int(r[6]), float(r[7]), int(r[8]), bool(r[9]), r[10])

    def get(self, decision_id: str) -> DecisionRow | None:
        """The stored decision ``decision_id``, or ``None``."""
        with self.session() as con:
            return self._get(con, decision_id)

    def reward(self, rows: Sequence[RewardRow], known: dict[str, DecisionRow] | None = None) -> list[str]:
        """Attach outcomes in one transaction; per row ``"stored"``, ``"duplicate"`` (the same reward
        again), ``"conflict"`` (another reward was stored first: it is kept) or ``"unknown"`` (no such
        decision). ``known`` maps ids to decisions the caller already has (saves a lookup)."""
        if not rows:
            return []
        known = dict(known or {})
        with self.session() as con, self._transaction(con):
            first: dict[str, RewardRow] = {}
            for r in rows:
                first.setdefault(r.decision_id, r)
            decisions = {i: known.get(i) or self._get(con, i) for i in first}
            todo = [r for i, r in first.items() if decisions[i] is not None]
            got = self._insert(con, "decision_rewards", ("decision_id", "reward", "ts"), ("text", "float8", "timestamp"),
                               [[r.decision_id for r in todo], [float(r.reward) for r in todo], [r.ts for r in todo]],
                               conflict="decision_id", returning="decision_id") if todo else []
            inserted = {str(g[0]) for g in got}
            events = []
            for i in inserted:
                d, r = decisions[i], first[i]
                if d is not None and d.experiment_id is not None:
                    events.append((f"reward:{i}", d.experiment_id, d.variant or "", d.unit_id, REWARD_EVENT, r.ts,
                                   float(r.reward)))
            self._events(con, events)
            stored = {i: float(first[i].reward) for i in inserted}
            for r in todo:
                if r.decision_id not in inserted:
                    (value,) = self._rows(con, "SELECT reward FROM decision_rewards WHERE decision_id = ?",
                                          (r.decision_id,))[0]
                    stored[r.decision_id] = float(value)
        out = []
        for r in rows:
            if decisions[r.decision_id] is None:
                out.append("unknown")
            elif first[r.decision_id] is r and r.decision_id in inserted:
                out.append("stored")
            else:
                out.append(_reward_outcome(stored[r.decision_id], float(r.reward)))
        return out

    def match_events(self, rule: RewardRule, *, policy: str | None = None, experiment_id: int | None = None,
                     now: dt.datetime | None = None, final: bool = False) -> int:
        """Attach the rewards of ingested events (see :class:`RewardRule`) to the unrewarded decisions of
        a policy key and/or an experiment whose window is over at ``now`` (default: the current UTC
        time; ``final``: every window is over). One ``INSERT … SELECT`` (one transaction): a decision
        that already has a reward (from ``POST /reward`` or an earlier match) keeps it, so nothing is
        counted twice, and running it again stores nothing new. Returns the rewards stored."""
        if policy is None and experiment_id is None:
            raise DecisionLogError("match_events needs a policy key or an experiment id (the decisions to reward)")
        now = now if now is not None else dt.datetime.now(dt.UTC).replace(tzinfo=None)
        where: list[str] = []
        scope: list[Any] = []
        if policy is not None:
            where.append("policy = ?")
            scope.append(str(policy))
        if experiment_id is not None:
            where.append("experiment_id = ?")
            scope.append(int(experiment_id))
        params: list[Any] = [*scope]
        if rule.window is None:
            end = "s.next_ts"
        else:
            end = "CASE WHEN s.next_ts IS NULL OR s.ts + CAST(? AS INTERVAL) < s.next_ts THEN s.ts + CAST(? AS INTERVAL) ELSE s.next_ts END"
            span = f"{round(float(rule.window) * 1e6)} microseconds"
            params += [span, span]
        params += ([] if final else [now]) + [now, rule.event_type, f"{REWARD_EVENT}:%"]
        if rule.value == "sum":
            value = "COALESCE(SUM(CASE WHEN e.event_id IS NULL THEN 0.0 ELSE COALESCE(e.value, 1.0) END), 0.0)"
        else:
            value = "CASE WHEN COUNT(e.event_id) > 0 THEN 1.0 ELSE 0.0 END"
        due = "TRUE" if final else "o.end_ts IS NOT NULL AND o.end_ts <= ?"
        sql = f"""
            INSERT INTO decision_rewards (decision_id, reward, ts)
            WITH s AS (
                SELECT decision_id, unit_id, experiment_id, ts,
                       LEAD(ts) OVER (PARTITION BY policy, experiment_id, unit_id ORDER BY ts, seq) AS next_ts
                FROM decisions WHERE {" AND ".join(where)}
            ), o AS (
                SELECT s.decision_id, s.unit_id, s.experiment_id, s.ts, {end} AS end_ts
                FROM s WHERE NOT EXISTS (SELECT 1 FROM decision_rewards r WHERE r.decision_id = s.decision_id)
            ), due AS (
                SELECT * FROM o WHERE {due}
            )
            SELECT due.decision_id, {value}, CAST(? AS TIMESTAMP)
            FROM due LEFT JOIN events e
              ON e.user_id = due.unit_id AND e.event_type = ? AND e.ts >= due.ts
             AND (due.end_ts IS NULL OR e.ts < due.end_ts)
             AND (due.experiment_id IS NULL OR e.experiment_id = due.experiment_id)
             AND NOT (e.event_id LIKE ?)
            GROUP BY due.decision_id
            ON CONFLICT (decision_id) DO NOTHING
            RETURNING decision_id"""
        with self.session() as con:
            return len(self._rows(con, sql, params))

    # ------------------------------------------------------------------ reads
    def count(self, policy: str | None = None) -> tuple[int, int, int]:
        """(decisions, distinct decision ids, rewards) stored, of one policy key or all."""
        where = " WHERE policy = ?" if policy is not None else ""
        params = (policy,) if policy is not None else ()
        with self.session() as con:
            n, distinct = self._rows(con, f"SELECT COUNT(*), COUNT(DISTINCT decision_id) FROM decisions{where}", params)[0]
            (rewards,) = self._rows(con, "SELECT COUNT(*) FROM decision_rewards r JOIN decisions d "
                                    f"USING (decision_id){where.replace('policy', 'd.policy')}", params)[0]
        return int(n), int(distinct), int(rewards)

    def read(
        self,
        *,
        policy: str | None = None,
        experiment_id: int | None = None,
        after_reward_seq: int | None = None,
        rewarded_only: bool = False,
        trains: bool | None = None,
        last: int | None = None,
    ) -> LoggedDecisions:
        """Logged decisions of a policy key and/or an experiment, with their outcomes, by ``seq``.

        ``after_reward_seq``: only decisions whose reward came after that reward ``seq`` (the updater's
        watermark; implies ``rewarded_only``); ``trains``: only rows that may (or may not) train;
        ``last``: only the newest ``last`` rows.
        """
        where: list[str] = []
        params: list[Any] = []
        if policy is not None:
            where.append("d.policy = ?")
            params.append(policy)
        if experiment_id is not None:
            where.append("d.experiment_id = ?")
            params.append(int(experiment_id))
        if trains is not None:
            where.append("d.trains = ?")
            params.append(bool(trains))
        if after_reward_seq is not None:
            where.append("r.seq > ?")
            params.append(int(after_reward_seq))
        join = "JOIN" if rewarded_only or after_reward_seq is not None else "LEFT JOIN"
        order = "r.seq" if after_reward_seq is not None else "d.seq"
        sql = ("SELECT d.decision_id, d.unit_id, d.variant, d.context, d.action, d.propensity, d.policy_version, "
               f"d.trains, r.reward, r.seq, d.seq FROM decisions d {join} decision_rewards r USING (decision_id)"
               + (f" WHERE {' AND '.join(where)}" if where else "") + f" ORDER BY {order} DESC")
        if last is not None:
            sql += f" LIMIT {int(last)}"
        with self.session() as con:
            rows = self._rows(con, sql, params)
        rows.reverse()
        n = len(rows)
        cols = list(zip(*rows, strict=True)) if rows else [()] * 11
        contexts = np.array([json.loads(c) for c in cols[3]], dtype=np.float64) if n else np.zeros((0, 0))
        return LoggedDecisions(
            decision_id=np.array(cols[0], dtype=object), unit_id=np.array(cols[1], dtype=object),
            variant=np.array(cols[2], dtype=object), context=contexts.reshape(n, -1) if n else contexts,
            action=np.array(cols[4], dtype=np.int64), propensity=np.array(cols[5], dtype=np.float64),
            policy_version=np.array(cols[6], dtype=np.int64), trains=np.array(cols[7], dtype=bool),
            reward=np.array([np.nan if v is None else v for v in cols[8]], dtype=np.float64),
            reward_seq=np.array([-1 if v is None else v for v in cols[9]], dtype=np.int64),
            seq=np.array(cols[10], dtype=np.int64),
        )

    def policies(self) -> list[tuple[str, int | None, int]]:
        """(policy key, experiment id, decisions) of every key in the log."""
        with self.session() as con:
            rows = self._rows(con, "SELECT policy, MIN(experiment_id), COUNT(*) FROM decisions GROUP BY policy ORDER BY policy")
        return [(str(p), None if e is None else int(e), int(n)) for p, e, n in rows]


def open_decision_log(url: Any = None) -> DecisionLog:
    """The decision log of the event store at ``url`` (anything :func:`open_event_store` accepts)."""
    from battleground.storage.events import open_event_store

    return DecisionLog(open_event_store(url))

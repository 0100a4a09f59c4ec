"""One SQL definition, compiled per engine with sqlglot.

The metric-sums and event queries are written once (``_sums_sql.py``, ``_events_sql.py``) in the
dialect DuckDB and PostgreSQL share, with ``:name`` placeholders. :func:`compile_sql` parses that text
with sqlglot (once per text: the parse is cached) and writes it in an engine's dialect, after a few
rewrites on the syntax tree for what an engine lacks — never a second, hand-written query:

* ``agg(x) FILTER (WHERE c)`` becomes ``agg(CASE WHEN c THEN x END)`` where FILTER is unknown (MySQL,
  MariaDB, ClickHouse, BigQuery, Snowflake); ``COUNT(*)`` becomes ``COUNT(CASE WHEN c THEN 1 END)``.
* ``WITH name AS MATERIALIZED (…)`` loses the hint outside DuckDB and PostgreSQL.
* ``:name`` placeholders either stay placeholders (DuckDB and PostgreSQL bind them as today) or become
  literals (every other engine, and the text ``battleground events sql`` prints): strings quoted by the
  dialect's own rules, instants as ``CAST('…' AS TIMESTAMP(6))``, windows as intervals in microseconds.
* the table ``events`` can be replaced by any relation (a source's mapped table, see ``_sources.py``).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from battleground.errors import StorageError

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["BOUND_DIALECTS", "DIALECTS", "DialectError", "compile_sql", "literal"]

# The dialects the text is written in (and read as).
SOURCE_DIALECT = "duckdb"
# Engines that bind the placeholders themselves (the stores' drivers do, as before).
BOUND_DIALECTS = ("duckdb", "postgres")
# Engines that know ``agg(...) FILTER (WHERE ...)``.
_FILTER = {"duckdb", "postgres", "spark", "databricks", "trino", "presto", "sqlite"}
_MATERIALIZED = {"duckdb", "postgres"}
# Dialects `battleground events sql` accepts (sqlglot's names; "mariadb" is written as MySQL).
DIALECTS = ("athena", "bigquery", "clickhouse", "databricks", "duckdb", "hive", "mariadb", "mysql",
            "oracle", "postgres", "presto", "redshift", "snowflake", "spark", "sqlite", "trino", "tsql")
_ALIASES = {"postgresql": "postgres", "mariadb": "mysql"}


class DialectError(StorageError, ValueError):
    """An SQL dialect battleground cannot write."""


def dialect_name(dialect: str) -> str:
    """sqlglot's name of ``dialect`` (``postgresql`` → ``postgres``, ``mariadb`` → ``mysql``)."""
    name = _ALIASES.get(dialect.lower(), dialect.lower())
    if name not in DIALECTS and dialect.lower() not in DIALECTS:
        raise DialectError(f"dialect must be one of {', '.join(DIALECTS)}, got {dialect!r}")
    return name


@functools.lru_cache(maxsize=256)
def _parsed(sql: str) -> exp.Expr:
    import sqlglot

    return sqlglot.parse_one(sql, read=SOURCE_DIALECT)


def _filter_to_case(node: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    if not isinstance(node, exp.Filter):
        return node
    agg = node.this.copy()
    cond = node.expression.this.copy()  # the WHERE's condition
    arg = agg.this
    if isinstance(agg, exp.Count) and (arg is None or isinstance(arg, exp.Star)):
        agg.set("this", exp.Case(ifs=[exp.If(this=cond, true=exp.Literal.number(1))]))
    else:
        agg.set("this", exp.Case(ifs=[exp.If(this=cond, true=arg)]))
    return agg


def literal(value: Any, dialect: str) -> exp.Expression:
    """A parameter value as a literal of ``dialect``."""
    from sqlglot import exp

    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(repr(value) if isinstance(value, float) else str(value))
    if isinstance(value, dt.timedelta):
        micros = value.days * 86_400_000_000 + value.seconds * 1_000_000 + value.microseconds
        return exp.Interval(this=exp.Literal.number(micros), unit=exp.var("MICROSECOND"))
    if isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S.%f")
        kind = "DateTime64(6)" if dialect == "clickhouse" else "TIMESTAMP(6)"
        return exp.cast(exp.Literal.string(text), exp.DataType.build(kind, dialect=dialect))
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise TypeError(f"cannot write a {type(value).__name__} parameter as an SQL literal")


def compile_sql(
    sql: str,
    dialect: str,
    params: Mapping[str, Any] | None = None,
    *,
    events: exp.Expression | None = None,
    pretty: bool = False,
) -> str:
    """``sql`` (the shared text) in ``dialect``.

    Args:
        params: bind these values as literals (required for engines outside :data:`BOUND_DIALECTS`,
            optional for DuckDB and PostgreSQL, whose placeholders are otherwise kept).
        events: a relation (sqlglot expression: a table or a subquery) read instead of the table
            ``events``.
        pretty: indented output (for people).
    """
    name = dialect_name(dialect)
    if params is None and events is None:
        return _compiled(sql, name, pretty)
    return _compile(sql, name, params, events, pretty)


@functools.lru_cache(maxsize=256)
def _compiled(sql: str, name: str, pretty: bool) -> str:
    return _compile(sql, name, None, None, pretty, reuse=False)


def _compile(sql: str, name: str, params: Mapping[str, Any] | None, events: exp.Expression | None,
             pretty: bool, *, reuse: bool = True) -> str:
    from sqlglot import exp

    if params is None and name not in BOUND_DIALECTS:
        raise DialectError(f"{name} cannot bind placeholders: pass params to compile_sql")
    # a private tree, changed in place below: a copy of the cached parse, or (``reuse=False``: the
    # output is cached, so this text is compiled once) a parse of its own, which costs less than a copy
    if reuse:
        tree = _parsed(sql).copy()
    else:
        import sqlglot

        tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    if name not in _FILTER:
        tree = tree.transform(_filter_to_case, copy=False)
    if name not in _MATERIALIZED:
        for cte in tree.find_all(exp.CTE):
            cte.set("materialized", None)
    if params is not None:
        missing = sorted({p.name for p in tree.find_all(exp.Placeholder)} - set(params))
        if missing:
            raise DialectError(f"no value for the placeholder(s) {missing}")
        tree = tree.transform(
            lambda node: literal(params[node.name], name) if isinstance(node, exp.Placeholder) else node, copy=False
        )
    else:  # the stores' drivers bind ``:name`` (see ``_events_sql.render``)
        tree = tree.transform(
            lambda node: exp.var(f":{node.name}") if isinstance(node, exp.Placeholder) else node, copy=False
        )
    if events is not None:
        ctes = {c.alias for c in tree.find_all(exp.CTE)}
        if "events" in ctes:
            raise DialectError("the query defines its own 'events'")
        for table in list(tree.find_all(exp.Table)):
            if table.name == "events" and not table.args.get("db"):
                alias = table.alias or "events"
                as_alias = exp.TableAlias(this=exp.to_identifier(alias))
                if isinstance(events, exp.Table):
                    named = events.copy()
                    named.set("alias", as_alias)
                    table.replace(named)
                else:
                    table.replace(exp.Subquery(this=events.copy(), alias=as_alias))
    if name == "clickhouse":  # ClickHouse's TIMESTAMP is DateTime, whole seconds: keep the microseconds
        tree = tree.transform(_microsecond_casts)
    return tree.sql(dialect=name, pretty=pretty)


def _microsecond_casts(node: exp.Expression) -> exp.Expression:
    from sqlglot import exp

    if isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.TIMESTAMP and not node.to.expressions:
        return exp.cast(node.this, exp.DataType.build("Nullable(DateTime64(6))", dialect="clickhouse"))
    return node

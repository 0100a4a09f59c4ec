"""Storage: the experiment registry (SQLAlchemy + Alembic) and the event stores (DuckDB, PostgreSQL)."""

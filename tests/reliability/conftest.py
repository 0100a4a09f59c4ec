"""A throwaway PostgreSQL cluster for fault tests (``benchmarks/_pgcluster.py``): made with ``initdb`` on
a spare port, never the shared server, removed afterwards. Tests that need it fail (never skip) when
PostgreSQL's binaries are missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from benchmarks._pgcluster import Cluster, ClusterUnavailableError, throwaway_cluster


@pytest.fixture
def throwaway_postgres() -> Iterator[Cluster]:
    try:
        with throwaway_cluster() as cluster:
            yield cluster
    except ClusterUnavailableError as exc:
        pytest.fail(str(exc))

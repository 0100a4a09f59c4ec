"""The suite relies on ``--dist loadgroup`` (Makefile) to keep stateful stories and the Spark JVM on
one worker; this fails if pytest-xdist stops honouring ``xdist_group`` (as with pytest 9.2)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("probe")


def test_xdist_group_marks_reach_the_scheduler(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        return  # not under `-n N --dist loadgroup`: nothing is distributed
    assert request.node.nodeid.endswith("@probe"), request.node.nodeid

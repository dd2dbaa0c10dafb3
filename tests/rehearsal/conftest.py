"""Rehearsal tests: the synthesized state machine executed on this machine against local twins.

Tests marked ``rehearsal`` run only when selected with ``-m rehearsal`` (``make rehearse``); unmarked
ones run with the rest of the suite. No test here reaches AWS: the fake credentials are set before any
client exists and every endpoint is a twin on 127.0.0.1.
"""

from __future__ import annotations

import os

import pytest

from tests.rehearsal.support.rehearsal import FAKE_AWS

os.environ.update(FAKE_AWS)
os.environ.pop("AWS_PROFILE", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "rehearsal" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="a rehearsal scenario: run with -m rehearsal (make rehearse)")
    for item in items:
        # The marker, not the keyword: every item of this package has the keyword "rehearsal".
        if item.get_closest_marker("rehearsal") is not None:
            item.add_marker(skip)

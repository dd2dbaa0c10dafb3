"""Shared test configuration (the embedded-service fixtures come from resgate.testing.fixtures).

``make test`` runs the suite on two pytest-xdist workers with ``--dist loadgroup``. The end-to-end gate
runs are wall-clock bound (their load lasts as long as the config says) and each needs the machine to
itself only as much as a user's `resgate run` does, so they run one after another on one worker while the
other worker takes the CPU-bound rest. Three packages are kept on one worker each, as one group:

- ``tests/e2e``: the gate runs never overlap one another (each starts its own target, load and faults);
- ``tests/infra``: the stack is synthesized once per worker (about 10 s), so once in all;
- ``tests/rehearsal``: its assembly and bundle caches are built once.

Without ``-n`` (a single file, a debugging run) the groups change nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
GROUPS = ("e2e", "infra", "rehearsal")


def group_of(path: Path) -> str | None:
    """The xdist group of a test file: its package under tests/ when that is one of :data:`GROUPS`."""
    try:
        package = path.resolve().relative_to(_TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return package if package in GROUPS else None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = group_of(Path(str(item.path)))
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _grouped_on_one_worker(request: pytest.FixtureRequest) -> None:
    """Under ``--dist loadgroup``, a grouped test's node id carries its group (xdist's own mechanism);
    if an upgrade of pytest or xdist ever drops it again, the groups would be silently ignored and the
    e2e gate runs would overlap: fail loudly instead."""
    if request.config.getoption("dist", "no") != "loadgroup":
        return
    group = group_of(Path(str(request.node.path)))
    if group is not None:
        assert request.node.nodeid.endswith(f"@{group}"), (
            f"{request.node.nodeid}: xdist ignored the group {group!r} (see tests/conftest.py)"
        )

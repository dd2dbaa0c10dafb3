"""Shared test configuration (the embedded-service fixtures come from resgate.testing.fixtures).

``make test`` runs the suite on two pytest-xdist workers with ``--dist loadgroup``. The end-to-end gate
runs are wall-clock bound (their load lasts as long as the config says) and each needs the machine to
itself only as much as a user's `resgate run` does, so they run one after another on one worker while the
other worker takes the CPU-bound rest. Three packages are kept on one worker each, as one group:

- ``tests/e2e``: the gate runs never overlap one another (each starts its own target, load and faults);
- ``tests/infra``: the stack is synthesized once per worker (about 10 s), so once in all;
- ``tests/rehearsal``: its assembly and bundle caches are built once.

The e2e group is handed out first, then the infra and rehearsal groups, then every other test (see
:func:`pytest_configure`): the gate runs are the suite's critical path, so they start at once, and the
other worker takes the two big groups while it is still the only one taking work.

Without ``-n`` (a single file, a debugging run) the groups and this order change nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
GROUPS = ("e2e", "infra", "rehearsal")
# The order xdist hands the groups out in: every test outside them comes after.
_ORDER = {group: i for i, group in enumerate(GROUPS)}


def group_of(path: Path) -> str | None:
    """The xdist group of a test file: its package under tests/ when that is one of :data:`GROUPS`."""
    try:
        package = path.resolve().relative_to(_TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return package if package in GROUPS else None


def _loadgroup(config: pytest.Config) -> bool:
    """Whether this run distributes with ``--dist loadgroup``: on the controller its option says so; a
    worker gets ``dist = "no"`` and, from xdist, ``loadgroup = True`` instead."""
    return config.getoption("dist", "no") == "loadgroup" or bool(getattr(config.option, "loadgroup", False))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Under ``--dist loadgroup``, xdist hands out work in collection order (see
    :func:`pytest_collection_modifyitems`) instead of the largest group first. Sorted by size, the e2e
    group (fewer tests than infra and rehearsal, and the longest) came third: its gate runs waited until
    one of the other two groups was done, and the suite's wall time was that wait plus the gate runs."""
    if _loadgroup(config):
        config.option.loadscopereorder = False


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = group_of(Path(str(item.path)))
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    if _loadgroup(config):
        # Stable: each package and module keeps its own order (the same on every worker).
        items.sort(key=lambda item: _ORDER.get(group_of(Path(str(item.path))), len(GROUPS)))


@pytest.fixture(autouse=True)
def _grouped_on_one_worker(request: pytest.FixtureRequest) -> None:
    """Under ``--dist loadgroup``, a grouped test's node id carries its group (xdist's own mechanism);
    if an upgrade of pytest or xdist ever drops it again, the groups would be silently ignored and the
    e2e gate runs would overlap: fail loudly instead."""
    if not _loadgroup(request.config):
        return
    group = group_of(Path(str(request.node.path)))
    if group is not None:
        assert request.node.nodeid.endswith(f"@{group}"), (
            f"{request.node.nodeid}: xdist ignored the group {group!r} (see tests/conftest.py)"
        )

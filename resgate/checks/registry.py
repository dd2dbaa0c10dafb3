"""The gate's checkers by name: one static table, and the shape every checker module has.

:data:`CHECKERS` maps each checker's ``NAME`` to its module, imported here by name, so a misspelt checker is
an import error (and a type error) rather than a lookup that fails at run time. :class:`Checker` is what a
checker module provides (modules satisfy a ``Protocol`` structurally, PEP 544); :class:`GatheringChecker`
adds ``gather`` for the checkers that read live state (integrity, replay). The evidence each one judges is
built by :data:`resgate.evidence.builders.BUILDERS`, one named function per checker.

Adding a checker: a package under ``resgate/checks/``, one line in :data:`CHECKERS`, its evidence builder,
its Lambda folder (docs/CONVENTIONS.md, "Adding a checker").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from resgate.checks import backpressure, integrity, recovery, replay, retryable, slo, streaming
from resgate.checks.result import CheckResult
from resgate.contract.errors import ConfigError


class ThresholdsParser(Protocol):
    """A checker's ``Thresholds``: the parser of its ``checks.<NAME>`` section."""

    @classmethod
    def from_dict(cls, d: Any, *, where: str) -> Any: ...


class Checker(Protocol):
    """What every checker module provides."""

    NAME: str
    Thresholds: type[ThresholdsParser]

    def check(self, evidence: Any, thresholds: Any) -> CheckResult:
        """The pure judge of the evidence against the thresholds."""
        ...


class GatherConfig(Protocol):
    """A gathering checker's parsed section: what ``gather`` reads (tables, topics, read models) and the
    ``thresholds`` that are all ``check`` takes."""

    @property
    def thresholds(self) -> Any: ...


class GatheringChecker(Checker, Protocol):
    """A checker whose evidence is read from the target's live state (its database and topics); its
    ``Thresholds`` parse the section into a :class:`GatherConfig`."""

    def gather(self, *args: Any, **kwargs: Any) -> Any:
        """Read the evidence ``check`` judges."""
        ...


CHECKERS: Mapping[str, Checker] = {
    slo.NAME: slo,
    recovery.NAME: recovery,
    retryable.NAME: retryable,
    integrity.NAME: integrity,
    replay.NAME: replay,
    streaming.NAME: streaming,
    backpressure.NAME: backpressure,
}
"""Every checker module by its ``NAME``, in the order results are reported."""

GATHERING: Mapping[str, GatheringChecker] = {
    integrity.NAME: integrity,
    replay.NAME: replay,
    streaming.NAME: streaming,
}
"""The checkers that read live state, by name."""

SOURCED: frozenset[str] = frozenset({integrity.NAME, replay.NAME})
"""The gathering checkers whose section parses into a gather config (sources, tables, and the judge's
``thresholds``); streaming's section is its thresholds, which name the topic it reads."""

OPT_IN: frozenset[str] = frozenset({streaming.NAME})
"""Checks that run only when their ``checks.<name>`` section is present: they judge data a default load
does not produce (streaming: the market-data subscribers' stream ledger)."""

CHECK_NAMES: tuple[str, ...] = tuple(CHECKERS)


def checker(name: str) -> Checker:
    """The checker module named ``name``; ConfigError naming the known ones otherwise."""
    try:
        return CHECKERS[name]
    except KeyError:
        raise ConfigError(f"unknown check {name!r}; known: {list(CHECKERS)}", where="checks") from None


def judged_with(name: str, parsed: Any) -> Any:
    """What checker ``name``'s ``check`` takes from its parsed section: the section itself, or, for a
    :data:`SOURCED` checker, its config's ``thresholds`` only (the sources belong to ``gather``)."""
    if name in SOURCED and parsed is not None:
        config: GatherConfig = parsed
        return config.thresholds
    return parsed


def parse_thresholds(name: str, body: Mapping[str, Any], where: str) -> Any:
    """The check's typed thresholds from its ``checks.<name>`` section (``enabled`` dropped), parsed by the
    checker's own ``Thresholds.from_dict``; ConfigError naming the field otherwise."""
    section = {k: v for k, v in body.items() if k != "enabled"}
    return checker(name).Thresholds.from_dict(section, where=where)

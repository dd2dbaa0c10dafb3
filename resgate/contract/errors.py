"""The gate's error types: invalid input (raised before any side effect) and run-time failures."""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid configuration or input; raised before anything is started or injected.

    ``where`` names the field (dotted path) and, when known, the file and line.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class GateError(RuntimeError):
    """The gate itself failed while running (a dependency is missing, a service did not start, ...)."""


class DependencyMissing(GateError):
    """A required external program or service is not available; the message says how to get it."""


class EvidenceMissing(GateError):
    """A piece of evidence a check needs is not there (a run file, or data a source did not return); the
    check reports ``unknown`` with this message instead of judging nothing."""

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        self.uri = uri
        super().__init__(message)


class ConfigErrors(ConfigError):
    """Several independent errors found in one config: ``errors`` lists each, in file order."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} errors:\n{lines}")

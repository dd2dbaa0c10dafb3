"""Run pytest with one module's source replaced by a mutant's, in this process only.

``python scripts/mutate/child.py <module> <mutant source file> <pytest args...>``: an import hook placed
first on ``sys.meta_path`` serves the mutant's source whenever ``<module>`` is imported (the file on disk
is never touched, so runs can go on while someone works in the tree); then ``pytest.main`` runs the
named tests and its exit code is this process's.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any


class _MutantLoader(importlib.abc.Loader):
    def __init__(self, source: str, origin: str) -> None:
        self.source = source
        self.origin = origin

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        code = compile(self.source, self.origin, "exec")
        exec(code, module.__dict__)


class _MutantFinder(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, source: str) -> None:
        self.module = module
        self.source = source

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module:
            return None
        sys.meta_path.remove(self)
        try:
            real = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if real is None or real.origin is None:
            return None
        spec = importlib.util.spec_from_file_location(
            fullname, real.origin, loader=_MutantLoader(self.source, real.origin)
        )
        return spec


def install(module: str, source: str) -> None:
    """Serve ``source`` for ``module`` from now on (it must not have been imported yet)."""
    if module in sys.modules:
        raise RuntimeError(f"{module} was imported before the mutant was installed")
    sys.meta_path.insert(0, _MutantFinder(module, source))


def main(argv: list[str]) -> int:
    module, source_file, *pytest_args = argv
    with open(source_file, encoding="utf-8") as fh:
        install(module, fh.read())
    import pytest

    return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

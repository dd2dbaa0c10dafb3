"""The checker registry: every checker module has the one shape, is found by a static table, and the checkers
import nothing above them (the config parses their sections, never the other way round)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from resgate.checks import registry
from resgate.checks.registry import CHECKERS, GATHERING, checker, parse_thresholds
from resgate.contract.errors import ConfigError
from resgate.evidence.builders import BUILDERS

ROOT = Path(__file__).resolve().parents[2]
ABOVE_THE_CHECKERS = (
    "resgate.config",
    "resgate.evidence",
    "resgate.runner",
    "resgate.cli",
    "lambdas",
    "infra",
)


def test_every_checker_is_registered_under_its_own_name_with_the_one_shape():
    assert list(CHECKERS) == ["slo", "recovery", "retryable", "integrity", "replay"]
    for name, module in CHECKERS.items():
        assert name == module.NAME
        assert inspect.ismethod(module.Thresholds.from_dict)
        assert list(inspect.signature(module.check).parameters)[1] == "thresholds"
    assert sorted(GATHERING) == ["integrity", "replay"]
    assert all(callable(m.gather) for m in GATHERING.values())


def test_the_gathering_checkers_gather_stays_the_function_once_its_module_is_loaded():
    for module in GATHERING.values():
        first = module.gather
        assert inspect.isfunction(first) and first.__name__ == "gather"
        assert module.gather is first


def test_every_checker_has_exactly_one_evidence_builder():
    assert list(BUILDERS) == list(CHECKERS)


def test_a_checker_with_an_unknown_name_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown check 'slos'; known: .*'slo'") as e:
        checker("slos")
    assert e.value.where == "checks"


def test_a_section_is_parsed_by_its_checkers_own_thresholds_without_its_enabled_flag():
    t = parse_thresholds("recovery", {"enabled": True, "rto_s": 12}, "checks.recovery")
    assert t == CHECKERS["recovery"].Thresholds(rto_s=12)
    with pytest.raises(ConfigError) as e:
        parse_thresholds("recovery", {"rto_s": -1}, "checks.recovery")
    assert (e.value.where or "").startswith("checks.recovery.rto_s")


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_no_checker_imports_the_config_the_evidence_or_a_conductor():
    offenders = {
        str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.startswith(ABOVE_THE_CHECKERS))
        for p in (ROOT / "resgate" / "checks").rglob("*.py")
    }
    assert {p: m for p, m in offenders.items() if m} == {}


def test_no_checker_is_looked_up_by_importlib():
    for path in [*(ROOT / "resgate").rglob("*.py"), *(ROOT / "lambdas").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
                assert "checks" not in ast.unparse(node), f"{path}: {ast.unparse(node)}"
    assert "importlib" not in (ROOT / "resgate" / "checks" / "registry.py").read_text()
    assert tuple(CHECKERS) == registry.CHECK_NAMES

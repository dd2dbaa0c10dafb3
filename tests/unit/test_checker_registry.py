"""The checker registry: every checker module has the one shape, is found by a static table, and the checkers
import nothing above them (the config parses their sections, never the other way round)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from resgate.checks import registry
from resgate.checks.registry import CHECKERS, GATHERING, checker, parse_thresholds
from resgate.config import load_config, load_config_text
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
    assert list(CHECKERS) == [
        "slo",
        "recovery",
        "retryable",
        "integrity",
        "replay",
        "streaming",
        "backpressure",
    ]
    for name, module in CHECKERS.items():
        assert name == module.NAME
        assert inspect.ismethod(module.Thresholds.from_dict)
        assert list(inspect.signature(module.check).parameters)[1] == "thresholds"
    assert sorted(GATHERING) == ["integrity", "replay", "streaming"]
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


def test_each_check_section_is_parsed_once_when_the_config_is_loaded(monkeypatch):
    calls: list[str] = []
    recovery = CHECKERS["recovery"]
    original = recovery.Thresholds.from_dict.__func__

    def counting(cls, d, **kw):
        calls.append(kw.get("where", ""))
        return original(cls, d, **kw)

    monkeypatch.setattr(recovery.Thresholds, "from_dict", classmethod(counting))
    cfg = load_config(ROOT / "resgate" / "configs" / "paperbroker.yaml")
    assert calls == ["checks.recovery"]
    assert cfg.thresholds_of("recovery") == recovery.Thresholds(rto_s=30)
    assert cfg.thresholds_of("recovery") is cfg.thresholds_of("recovery")
    assert calls == ["checks.recovery"]
    assert type(cfg.thresholds_of("replay")).__name__ == "ReplayConfig"


def test_a_disabled_check_has_no_thresholds_and_an_absent_one_has_its_checkers_defaults():
    text = (ROOT / "resgate" / "configs" / "paperbroker.yaml").read_text()
    start, end = text.index("\n  recovery:\n"), text.index("\n  retryable: {}\n")
    cfg = load_config_text(text[:start] + text[end:].replace("retryable: {}", "retryable: false"))
    assert cfg.thresholds_of("retryable") is None
    assert cfg.thresholds_of("recovery") == CHECKERS["recovery"].Thresholds()


def test_an_absent_section_of_a_checker_without_defaults_fails_when_the_check_is_used():
    text = (ROOT / "resgate" / "configs" / "paperbroker.yaml").read_text()
    start, end = text.index("\n  integrity:\n"), text.index("\n  replay:\n")
    cfg = load_config_text(text[:start] + text[end:])
    with pytest.raises(ConfigError) as e:
        cfg.thresholds_of("integrity")
    assert "configure orders" in str(e.value)


def test_the_gathering_checkers_judge_with_their_configs_thresholds_only_and_the_others_with_their_section():
    cfg = load_config(ROOT / "resgate" / "configs" / "paperbroker.yaml")
    assert set(GATHERING) >= registry.SOURCED
    for name in registry.SOURCED:
        config = cfg.thresholds_of(name)
        assert registry.judged_with(name, config) is config.thresholds
    for name in GATHERING:
        annotation = inspect.signature(CHECKERS[name].check).parameters["thresholds"].annotation
        assert "Config" not in str(annotation)  # sources and tables belong to gather, not to the judge
    streaming = object()  # an opt-in section: its thresholds are the section itself
    assert registry.judged_with("streaming", streaming) is streaming
    recovery = cfg.thresholds_of("recovery")
    assert registry.judged_with("recovery", recovery) is recovery

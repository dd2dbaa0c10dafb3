"""The gate config's JSON Schema (``resgate schema``): generated from the parser's typed model, it accepts
every config the project ships and refuses, as the parser does, the mistakes an editor should flag early."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest
import yaml

from resgate.checks.registry import CHECKERS
from resgate.cli import main
from resgate.config import load_config, load_config_text
from resgate.config.json_schema import SCHEMA_FILE, gate_config_schema
from resgate.config.model import FAULT_KINDS, Load
from resgate.contract.errors import ConfigError
from resgate.scaffold import InitOptions, config_text, scaffold

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    [
        *(ROOT / "resgate" / "configs").glob("*.yaml"),
        *(ROOT / "tests" / "e2e").glob("*.yaml"),
        *(ROOT / "docs").rglob("*.yaml"),
    ]
)
# The tutorial's `resgate init` (docs/TUTORIAL.md): the config docs/ shows.
TUTORIAL_INIT = InitOptions(
    name="myservice", services=(("web", "${python} app.py"),), database=True, duration_s=20
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = gate_config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_project_ships_configs_for_the_schema_to_check():
    names = {p.name for p in SHIPPED}
    assert {"paperbroker.yaml", "network.yaml", "gate_short.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_is_valid_for_the_schema_and_the_parser(validator, path: Path):
    load_config(path)
    assert [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))] == []


def test_the_config_init_writes_for_the_tutorial_is_valid_and_names_the_schema(validator, tmp_path: Path):
    text = config_text(TUTORIAL_INIT)
    assert text.splitlines()[0] == f"# yaml-language-server: $schema={SCHEMA_FILE}"
    assert [e.message for e in validator.iter_errors(yaml.safe_load(text))] == []
    scaffold(TUTORIAL_INIT, tmp_path / "gate.yaml")
    assert json.loads((tmp_path / SCHEMA_FILE).read_text()) == gate_config_schema()


def test_the_schema_is_derived_from_the_model_and_the_registry():
    schema = gate_config_schema()
    props = schema["properties"]
    assert schema["required"] == ["gate", "target"] and schema["additionalProperties"] is False
    assert set(props["checks"]["properties"]) == set(CHECKERS)
    assert props["faults"]["items"]["properties"]["kind"]["enum"] == list(FAULT_KINDS)
    assert props["load"]["properties"]["users"] == {"type": "integer", "default": Load().users}
    recovery = props["checks"]["properties"]["recovery"]["anyOf"][0]["properties"]
    assert recovery["rto_s"] == {"type": "number", "default": CHECKERS["recovery"].Thresholds().rto_s}


BASE = (ROOT / "tests" / "e2e" / "gate_short.yaml").read_text()


def _with(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


BAD = {
    "an unknown top-level section": BASE + "gaet: {name: x}\n",
    "a misspelt load field": _with("\nload:\n", "\nload:\n  userz: 3\n"),
    "users given as text": _with("  users: 20\n", "  users: many\n"),
    "an unknown fault kind": _with("kind: stop_task", "kind: meteor_strike"),
    "an unknown check": _with("\nchecks:\n", "\nchecks:\n  slos: {p95_ms: 100}\n"),
    "an rto given as text": _with("    rto_s: 30\n", '    rto_s: "30s"\n'),
    "a gate name with capitals": _with("name: ", "name: Not-Valid-"),
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_a_bad_config_is_refused_by_both_the_schema_and_the_parser(validator, text: str):
    assert list(validator.iter_errors(yaml.safe_load(text)))
    with pytest.raises(ConfigError):
        load_config_text(text)


def test_resgate_schema_prints_the_schema_and_version_prints_the_package_version(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == gate_config_schema()
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"resgate {version('resgate')}"

"""The gate config is validated up front and every error names the field and the file line."""

from __future__ import annotations

import textwrap

import pytest

from resgate.cli import default_config_path
from resgate.config import check_blast_radius, load_config, load_config_text
from resgate.contract.errors import ConfigError, ConfigErrors

BASE = textwrap.dedent(
    """\
    gate:
      name: demo
    target:
      local:
        services:
          - name: api
            command: ["${python}", -m, http.server]
            replicas: 2
            expose: true
    load:
      users: 5
      duration_s: 30
      baseline_s: 5
    faults:
      - kind: stop_task
        target: api
        percent: 50
        at_s: 10
    """
)


def _with(extra: str) -> str:
    return BASE + extra


def test_the_packaged_paperbroker_config_is_valid() -> None:
    cfg = load_config(default_config_path())
    assert cfg.name == "paperbroker"
    assert {s.name for s in cfg.target.services} == {"gateway", "matcher", "projector"}
    assert any(f.kind == "stop_task" for f in cfg.faults)


def test_a_minimal_config_gets_sane_defaults() -> None:
    cfg = load_config_text(BASE)
    assert cfg.load.users == 5
    assert cfg.faults[0].name == "stop_task-1"
    assert cfg.faults[0].params == {"percent": 50.0}
    assert cfg.guardrails.max_error_ratio == 0.5
    assert cfg.enabled_checks() == ["slo", "recovery", "retryable", "integrity", "replay"]


def test_an_unknown_fault_kind_names_the_field_and_line() -> None:
    text = BASE.replace("kind: stop_task", "kind: stop_everything")
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "gate.yaml")
    msg = str(err.value)
    assert "faults[0].kind" in msg
    assert "gate.yaml:15" in msg
    assert "stop_everything" in msg


def test_a_negative_duration_is_rejected_with_its_field() -> None:
    text = _with("  - kind: hang\n    target: api\n    duration_s: -3\n    at_s: 12\n")
    with pytest.raises(ConfigError, match=r"faults\[1\]\.duration_s .*must be >= 0"):
        load_config_text(text, "gate.yaml")


def test_a_percentage_outside_0_to_100_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"faults\[0\]\.percent.*<= 100"):
        load_config_text(BASE.replace("percent: 50", "percent: 150"))


def test_a_fault_on_an_unknown_service_is_rejected() -> None:
    with pytest.raises(ConfigError, match="no service named 'db'"):
        load_config_text(BASE.replace("target: api", "target: db"))


def test_a_fault_before_the_baseline_ends_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"faults\[0\]\.at_s.*baseline"):
        load_config_text(BASE.replace("at_s: 10", "at_s: 2"))


def test_a_duplicate_delivery_without_topics_is_rejected() -> None:
    text = _with("  - kind: duplicate_delivery\n    at_s: 12\n")
    with pytest.raises(ConfigError, match=r"faults\[1\]\.topics.*required"):
        load_config_text(text)


def test_an_unknown_field_is_rejected_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"load\.userz .*unknown field 'userz'"):
        load_config_text(BASE.replace("users: 5", "userz: 5"))


def test_a_missing_command_is_rejected() -> None:
    text = BASE.replace('command: ["${python}", -m, http.server]', "command: []")
    with pytest.raises(ConfigError, match=r"services\[0\]\.command.*must not be empty"):
        load_config_text(text)


def test_an_unknown_placeholder_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"unknown placeholder \$\{pyton\}"):
        load_config_text(BASE.replace("${python}", "${pyton}"))


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"gate.yaml:\d+"):
        load_config_text("gate:\n  name: [unclosed\n", "gate.yaml")


def test_a_production_target_is_refused_unless_allowed() -> None:
    text = BASE.replace("target:\n", "target:\n  tags: {env: production}\n")
    cfg = load_config_text(text)
    with pytest.raises(ConfigError, match="production"):
        check_blast_radius(cfg)
    allowed = load_config_text(text.replace("name: demo", "name: demo\n  allow_production: true"))
    check_blast_radius(allowed)


def test_a_check_can_be_disabled() -> None:
    cfg = load_config_text(_with("checks:\n  replay: false\n  integrity: {enabled: false}\n"))
    assert cfg.enabled_checks() == ["slo", "recovery", "retryable"]


def test_bad_slo_thresholds_are_reported_with_the_config_line() -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(_with("checks:\n  slo:\n    p95_ms: -5\n"), "gate.yaml")
    assert "checks.slo" in str(err.value)
    assert "gate.yaml:" in str(err.value)


def test_errors_in_two_faults_and_the_guardrails_are_all_reported_in_file_order() -> None:
    text = BASE + (
        "  - {kind: hang, target: nowhere, at_s: 12, duration_s: 1}\n"
        "  - {kind: db_blip, at_s: 40, duration_s: 1}\n"
        "guardrails: {max_error_ratio: 2}\n"
    )
    with pytest.raises(ConfigErrors) as e:
        load_config_text(text, "gate.yaml")

    wheres = [err.where for err in e.value.errors]
    assert wheres == [
        "faults[1].target (gate.yaml:19)",
        "faults[2].at_s (gate.yaml:20)",
        "guardrails.max_error_ratio (gate.yaml:21)",
    ]


def test_faults_are_not_judged_against_a_load_section_that_is_itself_invalid() -> None:
    with pytest.raises(ConfigError) as e:
        load_config_text(BASE.replace("duration_s: 30", "duration_s: -1"), "gate.yaml")

    assert not isinstance(e.value, ConfigErrors)
    assert e.value.where == "load.duration_s (gate.yaml:12)"


def test_load_workers_may_equal_the_users_and_not_exceed_them() -> None:
    assert load_config_text(BASE.replace("  users: 5\n", "  users: 5\n  workers: 5\n")).load.workers == 5
    with pytest.raises(ConfigError, match=r"load\.workers \(gate\.yaml:\d+\): must be <= load\.users \(5\)"):
        load_config_text(BASE.replace("  users: 5\n", "  users: 5\n  workers: 6\n"), "gate.yaml")


def test_load_workers_default_to_one_process_and_a_negative_count_is_rejected() -> None:
    assert load_config_text(BASE).load.workers == 0
    with pytest.raises(ConfigError, match=r"load\.workers .*must be >= 0"):
        load_config_text(BASE.replace("  users: 5\n", "  users: 5\n  workers: -1\n"))


def test_load_arrival_rate_is_optional_and_must_be_positive() -> None:
    assert load_config_text(BASE).load.arrival_rate is None
    assert (
        load_config_text(
            BASE.replace("  users: 5\n", "  users: 5\n  arrival_rate: 0.001\n")
        ).load.arrival_rate
        == 0.001
    )
    with pytest.raises(ConfigError, match=r"load\.arrival_rate .*must be >= 0\.001"):
        load_config_text(BASE.replace("  users: 5\n", "  users: 5\n  arrival_rate: 0\n"))


def test_judging_latency_from_the_intended_start_needs_the_open_model() -> None:
    intended = "checks:\n  slo: {p99_ms: 500, latency_from: intended}\n"
    with pytest.raises(ConfigError, match=r"checks\.slo\.latency_from .*set load\.arrival_rate"):
        load_config_text(_with(intended))
    open_model = _with(intended).replace("  users: 5\n", "  users: 5\n  arrival_rate: 50\n")
    assert load_config_text(open_model).thresholds_of("slo").latency_from == "intended"

"""``checks.streaming`` in the gate config: opt-in (an absent section leaves it off, since a default load
runs no market-data subscriber), a config error naming the section when it is on with no subscriber to
write its stream ledger, and its thresholds parsed once through the registry; its evidence builder
without a stream ledger (unknown) or without the brokers (a config error naming ``sources``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from resgate.checks.streaming import StreamingThresholds
from resgate.config import load_config_text
from resgate.contract.errors import ConfigError
from resgate.contract.layout import RunKey
from resgate.evidence.sources import Sources, evidence_for, run_check
from resgate.evidence.store import FolderStore

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
    """
)


def test_an_absent_streaming_section_leaves_the_check_off() -> None:
    cfg = load_config_text(BASE)
    assert "streaming" not in cfg.enabled_checks()
    assert cfg.thresholds_of("streaming") is None


def test_a_streaming_check_without_subscribers_is_a_config_error_naming_the_section() -> None:
    with pytest.raises(ConfigError) as e:
        load_config_text(BASE + "checks:\n  streaming: {rto_s: 10}\n", "gate.yaml")
    assert "checks.streaming" in (e.value.where or "")
    assert "RESGATE_STREAM_SUBSCRIBERS" in str(e.value)


def test_zero_subscribers_is_the_same_config_error() -> None:
    text = BASE.replace("  baseline_s: 5\n", "  baseline_s: 5\n  env: {RESGATE_STREAM_SUBSCRIBERS: '0'}\n")
    with pytest.raises(ConfigError):
        load_config_text(text + "checks:\n  streaming: {}\n")


def test_a_streaming_check_with_subscribers_is_on_with_its_thresholds() -> None:
    text = BASE.replace("  baseline_s: 5\n", "  baseline_s: 5\n  env: {RESGATE_STREAM_SUBSCRIBERS: '1'}\n")
    cfg = load_config_text(text + "checks:\n  streaming: {rto_s: 10, min_completeness_during: 0.9}\n")
    assert "streaming" in cfg.enabled_checks()
    assert cfg.thresholds_of("streaming") == StreamingThresholds(rto_s=10.0, min_completeness_during=0.9)


def test_a_disabled_streaming_section_needs_no_subscribers() -> None:
    cfg = load_config_text(BASE + "checks:\n  streaming: false\n")
    assert "streaming" not in cfg.enabled_checks()


# ------------------------------------------------------------------------------------- the evidence builder
def _store(tmp_path: Path) -> FolderStore:
    return FolderStore(tmp_path, RunKey.new("demo"))


def test_a_run_without_a_stream_ledger_makes_the_check_unknown(tmp_path: Path) -> None:
    sources = Sources(run_id="r", bootstrap="x")
    result = run_check("streaming", _store(tmp_path), StreamingThresholds(), sources)
    assert result.valid == "unknown" and "no stream ledger" in (result.error or "")


def test_a_stream_ledger_without_a_kafka_bootstrap_is_a_config_error_naming_sources(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.write_text("stream", '{"ts": 1, "client_id": "a", "event": "connect"}\n')
    with pytest.raises(ConfigError) as e:
        evidence_for("streaming", store, StreamingThresholds(), Sources(run_id="r"))
    assert e.value.where == "sources"

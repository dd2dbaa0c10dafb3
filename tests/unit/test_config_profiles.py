"""Named load/fault profiles (``profiles:``): each is validated as a whole config would be, before anything
starts, and errors name ``profiles.<name>.<field>`` with the file line."""

from __future__ import annotations

import textwrap

import pytest

from resgate.cli import default_config_path
from resgate.config import load_config, load_config_text
from resgate.contract.errors import ConfigError, ConfigErrors

BASE = textwrap.dedent(
    """\
    gate:
      name: demo
    target:
      local:
        services:
          - name: api
            command: [python, -m, http.server]
            expose: true
    load:
      users: 5
      spawn_rate: 5
      duration_s: 30
      baseline_s: 5
    faults:
      - {name: kill-a, kind: stop_task, target: api, at_s: 10}
      - {name: kill-b, kind: stop_task, target: api, at_s: 20}
    profiles:
    """
)


def profiles(body: str) -> str:
    return BASE + textwrap.indent(textwrap.dedent(body), "  ")


def test_a_profile_overrides_the_load_and_moves_and_selects_faults() -> None:
    cfg = load_config_text(
        profiles(
            """\
            nightly:
              load: {users: 50, duration_s: 120}
              faults: [kill-a, {name: kill-b, at_s: 90}]
            smoke:
              faults: [kill-b]
            """
        )
    )
    nightly = cfg.with_profile("nightly")
    assert (nightly.load.users, nightly.load.spawn_rate, nightly.load.duration_s) == (50, 5.0, 120.0)
    assert [(f.name, f.at_s) for f in nightly.faults] == [("kill-a", 10.0), ("kill-b", 90.0)]
    assert [f.name for f in cfg.with_profile("smoke").faults] == ["kill-b"]
    assert cfg.with_profile(None) is cfg and cfg.load.users == 5 and len(cfg.faults) == 2


def test_an_unknown_profile_names_the_known_ones() -> None:
    cfg = load_config_text(profiles("nightly: {load: {users: 50}}\n"))
    with pytest.raises(ConfigError, match=r"unknown profile 'weekly'; known: \['nightly'\]"):
        cfg.with_profile("weekly")


def test_a_profile_load_is_validated_with_the_field_and_line() -> None:
    with pytest.raises(ConfigError, match=r"profiles\.nightly\.load\.users \(gate\.yaml:\d+\): must be >= 1"):
        load_config_text(profiles("nightly: {load: {users: 0}}\n"), "gate.yaml")


def test_a_profile_may_change_only_users_spawn_rate_and_duration() -> None:
    with pytest.raises(ConfigError, match=r"profiles\.nightly\.load\.baseline_s .*unknown field"):
        load_config_text(profiles("nightly: {load: {baseline_s: 1}}\n"), "gate.yaml")


def test_a_fault_is_validated_against_the_profiles_own_load() -> None:
    text = profiles("short:\n  load: {duration_s: 15}\n")
    with pytest.raises(ConfigError, match=r"profiles\.short\.faults\[1\]\.at_s .*end of the load"):
        load_config_text(text, "gate.yaml")


def test_a_profile_names_only_faults_of_the_config_and_each_once() -> None:
    with pytest.raises(ConfigErrors) as e:
        load_config_text(profiles("a: {faults: [kill-z]}\nb: {faults: [kill-a, kill-a]}\n"), "gate.yaml")
    text = str(e.value)
    assert "profiles.a.faults[0].name" in text and "no fault named 'kill-z'" in text
    assert "profiles.b.faults[1].name" in text and "chosen twice" in text


def test_a_profile_keeps_the_configs_fault_order() -> None:
    with pytest.raises(
        ConfigError, match=r"profiles\.late\.faults\[1\]\.at_s .*kill-b must not fire before kill-a"
    ):
        load_config_text(profiles("late: {faults: [{name: kill-a, at_s: 25}, {name: kill-b, at_s: 15}]}\n"))


def test_a_fault_may_change_only_its_at_s() -> None:
    with pytest.raises(ConfigError, match=r"profiles\.big\.faults\[0\]\.percent .*unknown field"):
        load_config_text(profiles("big: {faults: [{name: kill-a, percent: 100}]}\n"))


def test_the_packaged_config_has_a_heavier_nightly_profile() -> None:
    cfg = load_config(default_config_path())
    assert set(cfg.profiles) == {"pipeline", "nightly"}
    nightly = cfg.with_profile("nightly")
    assert nightly.load.users > cfg.load.users and nightly.load.duration_s > cfg.load.duration_s
    assert cfg.with_profile("pipeline").load == cfg.load


def test_a_profile_may_scale_the_workers_and_more_workers_than_its_users_names_its_field() -> None:
    cfg = load_config_text(profiles("big: {load: {users: 40, workers: 4}}\n"))
    assert (cfg.with_profile("big").load.workers, cfg.load.workers) == (4, 0)
    with pytest.raises(ConfigError, match=r"profiles\.small\.load\.workers .*must be <= load\.users \(2\)"):
        load_config_text(profiles("small: {load: {users: 2, workers: 3}}\n"), "gate.yaml")

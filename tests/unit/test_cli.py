"""The `resgate` command's exit codes and outputs for validate, query, report and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resgate.checks.result import CheckResult
from resgate.cli import default_config_path, main
from resgate.contract.layout import RunKey
from resgate.evidence.store import FolderStore, write_jsonl


def _run(root: Path, result: str) -> RunKey:
    key = RunKey.new("pb")
    w = FolderStore(root, key)
    write_jsonl(w, "checks", [CheckResult("slo", result == "PASS", {"p95_ms": 7.0}).to_dict()])
    w.write_text("verdicts", json.dumps({"run_id": key.run_id, "result": result}) + "\n")
    w.write_text("report", f"# run {key.run_id}\n\n**Verdict: {result}**\n")
    return key


def test_validate_accepts_the_packaged_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(default_config_path())]) == 0
    assert "ok: gate 'paperbroker'" in capsys.readouterr().out


def test_validate_rejects_a_bad_config_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gate:\n  name: x\ntarget: {}\nload: {users: 0}\n")
    assert main(["validate", str(bad)]) == 2
    assert "load.users" in capsys.readouterr().err


def test_run_with_a_bad_config_exits_2_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gate:\n  name: x\ntarget: {}\nfaults: [{kind: meteor, at_s: 9}]\n")
    assert main(["run", str(bad), "--evidence-root", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "faults[0].kind" in err and "nothing was started" in err
    assert not (tmp_path / "ev").exists()


def test_query_report_and_runs_read_the_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, "PASS")
    failed = _run(tmp_path, "FAIL")
    assert (
        main(
            [
                "query",
                "select result, count(*) as n from verdicts group by 1 order by 1",
                "--root",
                str(tmp_path),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == [{"result": "FAIL", "n": 1}, {"result": "PASS", "n": 1}]
    assert main(["report", failed.run_id, "--root", str(tmp_path)]) == 1
    assert "**Verdict: FAIL**" in capsys.readouterr().out
    assert main(["report", "nope", "--root", str(tmp_path)]) == 2
    assert main(["runs", "--root", str(tmp_path)]) == 0
    assert failed.run_id in capsys.readouterr().out


def test_a_bad_query_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, "PASS")
    assert main(["query", "select nope from verdicts", "--root", str(tmp_path)]) == 2
    assert "query failed" in capsys.readouterr().err


THREE_ERRORS = """\
gate:
  name: Bad Name
target:
  local:
    services:
      - {name: web, command: [python3, app.py], replicas: 0, expose: true}
load: {users: 10, duration_s: 20, baseline_s: 5}
faults:
  - {name: kill-web, kind: stop_task, target: web, at_s: 8}
checks:
  slo: {p95_ms: -5}
"""


def test_validate_names_every_error_of_a_file_with_three_not_only_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "gate.yaml"
    bad.write_text(THREE_ERRORS)

    assert main(["validate", str(bad)]) == 2

    err = capsys.readouterr().err
    assert "(3 errors)" in err
    assert f"gate.name ({bad}:2)" in err
    assert f"target.local.services[0].replicas ({bad}:6)" in err
    assert "checks.slo.p95_ms" in err and f"({bad}:11)" in err


def test_one_error_is_reported_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "gate.yaml"
    bad.write_text(
        THREE_ERRORS.replace("Bad Name", "ok").replace("replicas: 0", "replicas: 2").replace("-5", "50")
    )
    bad.write_text(bad.read_text().replace("at_s: 8", "at_s: 80"))

    assert main(["validate", str(bad)]) == 2

    err = capsys.readouterr().err
    assert "(1 error)" in err and f"faults[0].at_s ({bad}:9)" in err


def test_run_with_an_unknown_profile_exits_2_naming_the_known_ones_and_starts_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", str(default_config_path()), "--profile", "weekly"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'weekly'" in err and "nightly" in err and "nothing was started" in err

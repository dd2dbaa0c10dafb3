"""Issue 9, defect 5: guardrails the experiments can see. The alarms read the load task's own 10-s metrics,
the load task may publish them (in its namespace only), and every experiment keeps watching its stop
conditions through an observation window after its fault (``aws:fis:wait``)."""

from __future__ import annotations

import pytest

from infra import constants as c
from infra.fault_experiments import iso_duration
from loadgen import live_metrics
from resgate.contract import env as env_names

pytestmark = pytest.mark.infra


def _statements(synth) -> list[dict]:
    out = []
    for p in synth.resources("AWS::IAM::Policy").values():
        out += p["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_the_alarms_read_the_load_tasks_metrics_in_10_second_periods(synth):
    alarms = synth.resources("AWS::CloudWatch::Alarm").values()
    by_metric = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms}
    assert set(by_metric) == {live_metrics.METRIC_ERROR_RATIO, live_metrics.METRIC_P95}
    for props in by_metric.values():
        assert props["Namespace"] == live_metrics.NAMESPACE == "ResilienceGate/Load"
        assert props["Dimensions"] == [{"Name": live_metrics.DIMENSION_GATE, "Value": "paperbroker"}]
        assert props["Period"] == 10
        assert props["Statistic"] == "Maximum"
        assert props["TreatMissingData"] == "notBreaching"
        assert props["EvaluationPeriods"] == props["DatapointsToAlarm"]


def test_the_load_task_publishes_its_metrics_where_the_alarms_read_them(synth):
    (task_def,) = synth.resources("AWS::ECS::TaskDefinition").values()
    (container,) = task_def["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env[env_names.ENV_METRICS_NAMESPACE] == live_metrics.NAMESPACE
    assert env[env_names.ENV_METRICS_GATE] == "paperbroker"
    assert env[env_names.ENV_METRICS_PERIOD_S] == "10"


def test_put_metric_data_is_granted_in_the_load_namespace_only(synth):
    puts = [s for s in _statements(synth) if "cloudwatch:PutMetricData" in str(s["Action"])]
    assert len(puts) == 1, puts
    assert puts[0]["Condition"] == {"StringEquals": {"cloudwatch:namespace": c.LOAD_METRICS_NAMESPACE}}
    task_role = synth.stack.load.task_definition.task_role
    role_ref = synth.stack.resolve(task_role.node.default_child.logical_id)
    holders = [
        p
        for p in synth.resources("AWS::IAM::Policy").values()
        if puts[0] in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert [h["Properties"]["Roles"] for h in holders] == [[{"Ref": role_ref}]]


def test_every_experiment_watches_its_stop_conditions_through_an_observation_window_after_the_fault(synth):
    alarms = set(synth.resources("AWS::CloudWatch::Alarm"))
    templates = synth.resources("AWS::FIS::ExperimentTemplate").values()
    assert templates
    window = synth.stack.alarms.observation_window_s
    assert window == 60  # (2 breaching periods + 1 for publishing) x 10 s, raised to aws:fis:wait's minute
    # The stop-task faults' and the duplicate delivery's (its SSM automation, issue 21).
    fault_actions = {"StopTasks": "aws:ecs:stop-task", "RunAutomation": "aws:ssm:start-automation-execution"}
    for t in templates:
        actions = t["Properties"]["Actions"]
        (fault,) = set(actions) - {"ObserveRecovery"}
        assert actions[fault]["ActionId"] == fault_actions[fault]
        assert actions["ObserveRecovery"] == {
            "ActionId": "aws:fis:wait",
            "Description": actions["ObserveRecovery"]["Description"],
            "Parameters": {"duration": "PT1M"},
            "StartAfter": [fault],
        }
        assert actions["ObserveRecovery"]["Description"].startswith("Keep the stop conditions watched while")
        conditions = t["Properties"]["StopConditions"]
        assert {s["Value"]["Fn::GetAtt"][0] for s in conditions} == alarms


def test_iso_durations_are_written_as_fis_writes_them():
    assert [iso_duration(s) for s in (60, 90, 3600, 3661, 43200)] == [
        "PT1M",
        "PT1M30S",
        "PT1H",
        "PT1H1M1S",
        "PT12H",
    ]

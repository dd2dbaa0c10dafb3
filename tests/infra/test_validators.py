"""The synthesized gate stack passes the offline validators of ``support/validators.py``: cfn-lint, the
VPC-role check, a throttling Retry on every task, botocore's parameter validation of every SDK task and
FIS template. Each validator also has a test that it finds what it looks for."""

from __future__ import annotations

import copy

import pytest

from tests.infra.support.validators import (
    cfn_lint_findings,
    definition_of,
    fis_template_errors,
    sdk_task_parameter_errors,
    tasks_without_throttling_retry,
    vpc_functions_without_eni_access,
)

pytestmark = pytest.mark.infra

# cfn-lint warnings kept, each with why it is not fixed. (rule, path pattern, reason)
ACKNOWLEDGED_WARNINGS: tuple[tuple[str, str, str], ...] = (
    (
        "W3045",
        "Resources/EvidenceAccessLogs",
        "CDK sets AccessControl LogDeliveryWrite on a server-access-log target bucket while the feature "
        "flag @aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy is off (cdk.json, outside infra/); until "
        "the flag is turned on, S3's log delivery writes through that ACL.",
    ),
    (
        "W3005",
        "Resources/",
        "CDK emits DependsOn on a function's (state machine's) role as well as on its default policy; the "
        "policy dependency is the one that matters (CreateFunction checks it), the role one is redundant.",
    ),
)


@pytest.fixture(scope="module")
def lint(synth) -> list[tuple[str, str, str]]:
    return cfn_lint_findings(synth.template_json)


def test_cfn_lint_finds_no_error_in_the_gate_stack(lint):
    assert [f for f in lint if f[0].startswith("E")] == []


def test_every_cfn_lint_warning_is_acknowledged_with_a_reason(lint):
    warnings = [f for f in lint if not f[0].startswith("E")]
    unacknowledged = [
        f
        for f in warnings
        if not any(f[0] == rule and f[1].startswith(p) for rule, p, _ in ACKNOWLEDGED_WARNINGS)
    ]
    assert unacknowledged == []


def test_every_function_in_the_vpc_has_a_role_that_can_create_network_interfaces(synth):
    assert vpc_functions_without_eni_access(synth.template_json) == []


def test_the_vpc_check_finds_a_function_whose_role_cannot_create_network_interfaces():
    template = {
        "Resources": {
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}, "VpcConfig": {}},
            },
            "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
            "Policy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "Roles": [{"Ref": "Role"}],
                    "PolicyDocument": {
                        "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]
                    },
                },
            },
        }
    }
    assert [p.split(" ")[0] for p in vpc_functions_without_eni_access(template)] == ["Fn"]
    managed = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    template["Resources"]["Role"]["Properties"]["ManagedPolicyArns"] = [managed]
    assert vpc_functions_without_eni_access(template) == []


def test_every_task_state_retries_throttling(synth):
    assert tasks_without_throttling_retry(definition_of(synth.template_json)) == []


def test_every_sdk_task_has_parameters_its_api_accepts(synth):
    assert sdk_task_parameter_errors(definition_of(synth.template_json)) == []


def test_the_sdk_task_check_finds_an_unknown_or_misspelled_parameter(synth):
    definition = copy.deepcopy(definition_of(synth.template_json))
    params = definition["States"]["Describe target services"]["Parameters"]
    params["Clusterr"] = params.pop("Cluster")
    definition["States"]["Write gate config"]["Parameters"]["NoSuchKey.$"] = "$.x"
    problems = sdk_task_parameter_errors(definition)
    assert any("Describe target services" in p and "Clusterr" in p for p in problems), problems
    assert any("Write gate config" in p and "NoSuchKey" in p for p in problems), problems


def test_every_fis_template_is_a_valid_create_experiment_template_request(synth):
    assert fis_template_errors(synth.template_json) == []


def test_the_fis_check_finds_a_template_with_a_wrong_type(synth):
    template = copy.deepcopy(synth.template_json)
    fis = next(r for r in template["Resources"].values() if r["Type"] == "AWS::FIS::ExperimentTemplate")
    fis["Properties"]["StopConditions"] = "aws:cloudwatch:alarm"
    assert fis_template_errors(template)

"""cdk-nag (AwsSolutions) acknowledgements of the gate stack: the reviewed IAM findings, and the helpers.

The IAM findings are reviewed here, in one place (:data:`IAM_FINDING_RULES`, applied by the stack to every
policy once all constructs have granted what they need). An acknowledgement of one resource's finding is
made by the construct that creates the resource, with its reason (:func:`acknowledge`).

cdk-nag 3 reports IAM wildcards and AWS managed policies per finding (``AwsSolutions-IAM5[Resource::…]``,
``AwsSolutions-IAM4[Policy::…]``) and acknowledges only exact finding ids, which embed CloudFormation
logical ids. :func:`acknowledge_iam_findings` therefore computes every finding of every IAM policy and role
the way the rule does and acknowledges those that match a reviewed :class:`FindingRule` (a pattern and a
reason). A finding that matches no rule stays a violation, so a new wildcard fails the synth (and
``tests/infra``) until someone reviews it here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import IConstruct


@dataclass(frozen=True)
class FindingRule:
    """Acknowledge findings of ``rule`` whose finding text matches ``pattern`` (a full match)."""

    rule: str
    pattern: str
    reason: str

    def matches(self, rule: str, finding: str) -> bool:
        return rule == self.rule and re.fullmatch(concrete_env(self.pattern), finding) is not None


# A stack synthesized with a concrete account and region (``-c account=… -c region=…``, as for a deploy)
# has literal values where an environment-agnostic one has the pseudo-parameter tokens: the patterns are
# written with the tokens and match either.
_PSEUDO = {
    "<AWS::Partition>": r"(?:<AWS::Partition>|aws(?:-cn|-us-gov|-iso|-iso-b)?)",
    "<AWS::Region>": r"(?:<AWS::Region>|[a-z]{2}(?:-[a-z]+)+-\d+)",
    "<AWS::AccountId>": r"(?:<AWS::AccountId>|\d{12})",
}


def concrete_env(pattern: str) -> str:
    """``pattern`` with each pseudo-parameter token also matching its concrete value."""
    for token, either in _PSEUDO.items():
        pattern = pattern.replace(token, either)
    return pattern


def flatten(node: Any) -> str:
    """cdk-nag's ``flattenCfnReference``: a resolved CloudFormation value as a flat string."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(flatten(i) for i in items)
        if "Fn::Sub" in node:
            return flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten(resource)}.{flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def wildcard_findings(document: dict[str, Any]) -> list[str]:
    """IAM5 findings of a resolved policy document: ``Action::…`` and ``Resource::…`` with a ``*``."""
    out: list[str] = []
    for st in document.get("Statement", []):
        if st.get("Effect") != "Allow":
            continue
        out += [f"Action::{a}" for a in _as_list(st.get("Action")) if isinstance(a, str) and "*" in a]
        out += [f"Resource::{r}" for r in map(flatten, _as_list(st.get("Resource"))) if "*" in r]
    return list(dict.fromkeys(out))


def _iam_nodes(root: IConstruct) -> Iterator[tuple[IConstruct, list[tuple[str, str]]]]:
    """Each CfnPolicy / CfnRole under ``root`` with its ``(rule, finding)`` pairs."""
    for node in root.node.find_all():
        stack = Stack.of(node)
        found: list[tuple[str, str]] = []
        if isinstance(node, iam.CfnPolicy):
            found += [
                ("AwsSolutions-IAM5", f) for f in wildcard_findings(stack.resolve(node.policy_document))
            ]
        elif isinstance(node, iam.CfnRole):
            for policy in stack.resolve(node.policies) or []:
                found += [
                    ("AwsSolutions-IAM5", f) for f in wildcard_findings(policy.get("PolicyDocument", {}))
                ]
            for arn in stack.resolve(node.managed_policy_arns) or []:
                flat = flatten(arn)
                if ":iam::aws:" in flat:
                    found.append(("AwsSolutions-IAM4", f"Policy::{flat}"))
        if found:
            yield node, found


def acknowledge_iam_findings(root: IConstruct, rules: Iterable[FindingRule]) -> list[str]:
    """Acknowledge every IAM4/IAM5 finding under ``root`` that a rule covers; return the ones none covers."""
    rules = list(rules)
    left: list[str] = []
    for node, findings in _iam_nodes(root):
        for rule_id, finding in findings:
            match = next((r for r in rules if r.matches(rule_id, finding)), None)
            if match is None:
                left.append(f"{node.node.path}: {rule_id}[{finding}]")
                continue
            Validations.of(node).acknowledge(Acknowledgment(id=f"{rule_id}[{finding}]", reason=match.reason))
    return left


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one (non-finding) rule on ``scope`` and everything under it."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


# Reviewed wildcard findings (see infra/nag.py). Logical ids vary, so the patterns use <[^>]+>.
IAM_FINDING_RULES = (
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::(arn:<AWS::Partition>:s3:::<[^>]+>|<[^>]+\.Arn>)/evidence/gate=[a-z0-9_-]+/\*",
        "Evidence objects of this gate only: the keys carry the run's date and id, known at run time.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::<[^>]+\.Arn>/evidence/gate=[a-z0-9_-]+/dt=\*/run_id=\*/[a-z_]+\.jsonl",
        "One file of every run of this gate (the timeline's load_shape.jsonl, and with a leader loss its "
        "leader_samples.jsonl): the run's date and id are "
        "known at run time.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::<[^>]+\.Arn>/fis-reports/gate=[a-z0-9_-]+/\*",
        "FIS experiment reports of this gate only: FIS names each report's key by its experiment id, known "
        "at run time.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/codebuild/<[^>]+>:\*",
        "Generated by CodeBuild for the pipeline project: its own log group and the streams of its builds.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
        r'\{"Fn::Select":\[6,\{"Fn::Split":\[":",\{"Ref":"[^"]+"\}\]\}\]\}:\*',
        "Executions of the gate's state machine only (generated by grant_execution): the pipeline project "
        "describes the run it started, whose name (the run id) is known at run time.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/[^*]+/\*",
        "Task ids are only known at run time; the statement is conditioned on ecs:cluster = the one cluster.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:container-instance/[^*]+/\*",
        "ecs:ListTasks (the timeline) and ecs:DescribeContainerInstances (FIS's ECS task network actions) "
        "are authorized on container instances; conditioned on ecs:cluster = the target.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task-definition/[A-Za-z0-9_-]+:\*",
        "Replay's rebuild task is named by its family: RunTask runs the latest revision, which is only known "
        "at run time; conditioned on ecs:cluster = the one cluster.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:fis:<AWS::Region>:<AWS::AccountId>:experiment/\*",
        "Experiment ids are only known at run time; conditioned on the gate's tag on the experiment.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:automation-execution/\*",
        "FIS's automation action (data-path faults, infra.fault_automation): an automation execution's id "
        "exists only once it is started; ssm:StartAutomationExecution is also limited to the gate's own "
        "documents, as AWS's managed AWSFaultInjectionSimulatorSSMAccess scopes the same actions.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:opsitem/\*",
        "An OpsItem's id exists only once it is created; the verdict and cleanup Lambdas may create (and tag "
        "at creation) only OpsItems whose request tags are exactly the gate's tag (aws:RequestTag, "
        "aws:TagKeys), as AWS's managed AIOpsConsoleAdminPolicy scopes the same two actions.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::<[^>]+\.Arn>:\*",
        "Generated by the Step Functions Lambda integration: versions and aliases of the gate's functions.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::\*",
        "Services without resource-level permissions: X-Ray trace upload, CloudWatch Logs log delivery of "
        "the state machine, tag:GetResources (FIS resolves targets by tag), ecs:ListTasks of the FIS role "
        "(FIS lists a Fargate cluster's tasks with no container instance; AWS's own "
        "AWSFaultInjectionSimulatorECSAccess policy grants it on *), cloudwatch:GetMetricStatistics "
        "(the slo check's ALB source), cloudwatch:PutMetricData (the load task's guardrail metrics, "
        "conditioned on the cloudwatch:namespace key), fis:ListExperiments (the abort cleanup, filtered by "
        "template id), "
        "cloudwatch:GetMetricWidgetImage (FIS renders the dashboard's graphs into its experiment reports), "
        "ssm:ListCommands and ssm:CancelCommand (FIS follows and cancels the SSM commands of its ECS task "
        "network actions), ec2:DescribeInstances and ec2:DescribeSubnets (the FIS actions reference lists "
        "them for those actions), ecs:DescribeTaskDefinition (the fault-injection preflight reads the target "
        "services' task definitions), "
        "and the ENI actions Lambda needs in the roles of the two functions in the VPC "
        "(DescribeNetworkInterfaces has no resource-level permission; the ENIs do not exist beforehand).",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:managed-instance/\*",
        "FIS sends its ECS task network actions to the SSM managed instances the target's SSM agent sidecars "
        "register at task start (ids known at run time); conditioned on their ECS_TASK_ARN tag being a task "
        "of the target cluster (infra.fault_experiments).",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:ssm:<AWS::Region>::document/AWSFIS-\*",
        "FIS's own AWS-owned SSM documents (AWSFIS-*), the ones its ECS task network actions run.",
    ),
    FindingRule(
        "AwsSolutions-IAM5",
        r"Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:[^*]+-\?\?\?\?\?\?",
        "A secret given by name matches its ARN only with the 6-character suffix Secrets Manager appends.",
    ),
)

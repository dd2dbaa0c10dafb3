"""Render a synthesized CloudFormation value (an ``Fn::Join`` of tokens) to concrete text with fake ARNs.

The state machine's ``DefinitionString`` is a join of literal ASL and ``Ref`` / ``Fn::GetAtt`` tokens; to
execute it (moto) the tokens become stable, recognisable fake values: a function's ARN is
``arn:aws:lambda:us-east-1:123456789012:function:<LogicalId>``, a ``Ref`` is the logical id (or a fake
ARN for resource types whose ``Ref`` is an ARN).
"""

from __future__ import annotations

from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "GateStack",
}
# Resource types whose Ref is an ARN (everything else: a name or id = the logical id).
_REF_IS_ARN = {
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{id}",
    "AWS::ECS::TaskDefinition": "arn:aws:ecs:{region}:{account}:task-definition/{id}:1",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{id}",
}
_ARN = {
    "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:{id}",
    "AWS::ECS::Cluster": "arn:aws:ecs:{region}:{account}:cluster/{id}",
    "AWS::S3::Bucket": "arn:aws:s3:::{id}",
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{id}",
    "AWS::IAM::Role": "arn:aws:iam::{account}:role/{id}",
    "AWS::CloudWatch::Alarm": "arn:aws:cloudwatch:{region}:{account}:alarm:{id}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{region}:{account}:table/{id}",
}


class Unresolvable(ValueError):
    """A CloudFormation construct the renderer does not know."""


def fake_ref(logical_id: str, resources: dict[str, Any]) -> str:
    if logical_id in PSEUDO:
        return PSEUDO[logical_id]
    rtype = resources.get(logical_id, {}).get("Type", "")
    pattern = _REF_IS_ARN.get(rtype)
    if pattern:
        return pattern.format(region=REGION, account=ACCOUNT, id=logical_id)
    if rtype == "AWS::S3::Bucket":
        return logical_id.lower()
    return logical_id


def fake_get_att(logical_id: str, attribute: str, resources: dict[str, Any]) -> str:
    rtype = resources.get(logical_id, {}).get("Type", "")
    if attribute == "Arn":
        pattern = _ARN.get(rtype, "arn:aws:fake:{region}:{account}:{id}")
        return pattern.format(
            region=REGION, account=ACCOUNT, id=logical_id.lower() if "s3" in pattern else logical_id
        )
    return f"{logical_id}.{attribute}"


def render(value: Any, resources: dict[str, Any]) -> Any:
    """Resolve Fn::Join / Ref / Fn::GetAtt / Fn::Select / Fn::Split in ``value`` to plain values."""
    if isinstance(value, list):
        return [render(v, resources) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Fn::Join":
            delimiter, items = arg
            return delimiter.join(str(render(i, resources)) for i in items)
        if key == "Ref":
            return fake_ref(arg, resources)
        if key == "Fn::GetAtt":
            logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return fake_get_att(logical_id, attribute, resources)
        if key == "Fn::Select":
            index, items = arg
            return render(items, resources)[int(index)]
        if key == "Fn::Split":
            delimiter, text = arg
            return str(render(text, resources)).split(delimiter)
        if key.startswith("Fn::"):
            raise Unresolvable(f"cannot render {key}")
    return {k: render(v, resources) for k, v in value.items()}

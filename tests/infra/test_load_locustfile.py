"""A user's own locustfile on AWS: the Fargate load task takes ``load.locustfile`` from S3 (downloading it,
with read access to that one object) or from a path in the user's own image; a path that cannot be in the
built image is refused at synth, naming the field."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest

import app as cdk_app
from infra import constants as c
from infra.load_generator import locustfile_source
from resgate.contract import env as env_names
from resgate.contract.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / c.DEFAULT_GATE_CONFIG).read_text()


def test_the_bundled_locustfile_needs_no_variable_and_no_grant() -> None:
    assert locustfile_source("loadgen/locustfile.py", own_image=False) == (None, None)


def test_an_s3_locustfile_is_downloaded_by_the_task_which_may_read_that_object_only() -> None:
    assert locustfile_source("s3://my-bucket/load/shop.py", own_image=False) == (
        "s3://my-bucket/load/shop.py",
        ("my-bucket", "load/shop.py"),
    )


def test_an_absolute_path_is_taken_from_the_users_own_image_only() -> None:
    assert locustfile_source("/app/shop/locustfile.py", own_image=True) == ("/app/shop/locustfile.py", None)
    with pytest.raises(ConfigError, match="loadgen_image") as e:
        locustfile_source("/app/shop/locustfile.py", own_image=False)
    assert e.value.where == "load.locustfile"


@pytest.mark.parametrize(
    "value", ["locustfile.py", "s3://bucket-only", "s3://b/not-python.txt", "s3:///k.py"]
)
def test_a_locustfile_that_cannot_reach_the_task_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(ConfigError) as e:
        locustfile_source(value, own_image=True)
    assert e.value.where == "load.locustfile"


def test_the_synthesized_task_gets_the_s3_locustfile_and_a_get_object_grant_on_it(tmp_path: Path) -> None:
    config = tmp_path / "gate.yaml"
    s3_file = "s3://load-files/shop/locustfile.py"
    config.write_text(DEFAULT.replace("locustfile: loadgen/locustfile.py", f"locustfile: {s3_file}"))
    app = cdk.App(
        outdir=str(tmp_path / "out"), context={c.CTX_SKIP_BUNDLING: "true", c.CTX_GATE_CONFIG: str(config)}
    )
    stack = cdk_app.build(app)
    template = app.synth().get_stack_by_name(stack.stack_name).template

    (task_def,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    (container,) = task_def["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env[env_names.ENV_LOCUSTFILE] == "s3://load-files/shop/locustfile.py"
    gets = [
        s
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "s3:GetObject" and "load-files" in str(s["Resource"])
    ]
    assert len(gets) == 1
    assert gets[0]["Resource"] == {
        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::load-files/shop/locustfile.py"]]
    }


def test_the_default_stack_sets_no_locustfile_variable(synth) -> None:  # type: ignore[no-untyped-def]
    (task_def,) = synth.resources("AWS::ECS::TaskDefinition").values()
    (container,) = task_def["Properties"]["ContainerDefinitions"]
    assert env_names.ENV_LOCUSTFILE not in {e["Name"] for e in container["Environment"]}

"""CDK entry point: builds the gate stack of one gate config and runs the cdk-nag AwsSolutions checks.

    cdk synth -c gate_config=resgate/configs/paperbroker.yaml -c target_cluster=... -c subnet_ids=...

The gate config path comes from ``-c gate_config=...`` (default ``resgate/configs/paperbroker.yaml``); every
other deployment value (cluster, services, tags, VPC, subnets, database secret, MSK bootstrap, ALB, ...)
from the context, else the config's ``target.aws`` section, else a placeholder — see
:mod:`infra.constants` and ``infra/README.md``. An invalid config or context value stops here with one
ConfigError, before any construct exists. cdk-nag findings that are not acknowledged fail the synth.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.gate_stack import GateStack
from infra.settings import DeploymentSettings
from resgate.contract.errors import ConfigError

ROOT = Path(__file__).resolve().parent


def register_checks(app: cdk.App) -> None:
    """cdk-nag's AwsSolutions pack as a validation plugin: unacknowledged errors fail the synth and are
    listed in ``<outdir>/validation-report.json``."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def build(app: cdk.App) -> GateStack:
    """Build the gate stack into ``app`` from its context, with the cdk-nag checks registered."""
    settings = DeploymentSettings.from_context(app.node.try_get_context, root=ROOT, env=os.environ)
    stack = GateStack(app, "GateStack", settings=settings, root=ROOT)
    register_checks(app)
    return stack


def main() -> int:
    app = cdk.App()
    try:
        build(app)
    except ConfigError as e:
        print(f"resgate: invalid gate config or context: {e}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())

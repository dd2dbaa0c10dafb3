"""The AWS side of ResilienceGate as CDK constructs, one per file; ``gate_stack`` wires them for one gate.

``evidence_bucket`` (S3 + Glue + Athena), ``assertion_functions`` (the Lambdas and their bundling),
``load_generator`` (Locust on Fargate), ``guardrail_alarms`` (CloudWatch alarms = FIS stop conditions),
``fault_experiments`` (FIS templates from ``fis_templates/``), ``gate_state_machine`` (the run),
``triggers`` (nightly rule, CodePipeline stage); ``settings`` reads the CDK context, ``constants`` names
everything, ``nag`` holds the reviewed cdk-nag acknowledgements. See ``infra/README.md``.
"""

"""The AWS side of ResilienceGate as CDK constructs, one per file; ``gate_stack`` wires them for one gate.

``evidence_bucket`` (S3 + Glue + Athena), ``assertion_functions`` (the Lambdas, each a ``gate_function``;
replay's rebuild tasks in ``replay_rebuilds``, the timeline's and quiesce step's grants in ``gate_steps``;
their assets in ``lambda_bundling``), ``load_generator`` (Locust on Fargate), ``guardrail_alarms``
(CloudWatch alarms = FIS stop conditions), ``fault_experiments`` (FIS templates from ``fis_templates/``),
``gate_state_machine`` (the run, composed from the phase builders of ``state_machine/``),
``abort_cleanup`` (the rule and the cleanup Lambda's job and grants), ``triggers`` (nightly rule,
CodePipeline stage). Each construct grants its own principals what they need on the resources it is
given (shared statement shapes in ``policies``); ``settings`` reads the CDK context, ``constants`` names
everything, ``nag`` holds the reviewed cdk-nag IAM findings. See ``infra/README.md``.
"""

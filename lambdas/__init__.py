"""The assertion Lambdas: thin Powertools handlers that run resgate's checkers on AWS evidence.

On AWS a Step Functions state machine calls ``timeline`` once the load has ended (it writes the recovery
check's evidence, see below), then one Lambda per check (``slo``, ``recovery``, ``retryable``,
``integrity``, ``replay``) in a Parallel state, then ``verdict``. Each check handler is built by
:func:`lambdas.common.handler.check_handler`: it parses its event, then calls
:func:`resgate.evidence.sources.run_check` — the function the local runner calls — on the run's S3 store
(and, for integrity/replay, Postgres and Kafka), and returns ``CheckResult.to_dict()`` as the state's
output. The entry point of every function is
``lambdas.<name>.handler.handler``.

Event of a check Lambda (one JSON object; fixtures in ``tests/functional/events/``)::

    {
      "run_id": "20260101T000000Z-a1b2c3",      # the run; also the logs' correlation id
      "gate": "paperbroker",                     # gate name (lowercase letters, digits, - and _)
      "dt": "2026-01-01",                        # the run's date partition
      "evidence_bucket": "my-evidence-bucket",   # optional: else env EVIDENCE_BUCKET
      "evidence_prefix": "evidence",             # optional: else env EVIDENCE_PREFIX, else "evidence"
      "thresholds": {...}                        # the check's section of the gate config (checks.<name>);
                                                 # when absent, read from the run's config.yaml in S3
    }

The evidence of run ``r`` lives under ``s3://<bucket>/<prefix>/gate=<gate>/dt=<dt>/run_id=<run_id>/``
with the file names of :data:`resgate.contract.layout.TABLES` / ``FILES`` (``ledger.jsonl``,
``load_stats.jsonl``, ``faults.jsonl``, ``health.jsonl``, ...), the same layout as a local run.

Check-specific fields:

- **slo**: ``"source": "s3"`` (default: ``load_stats.jsonl``, Locust's per-endpoint stats one JSON a line,
  plus ``ledger.jsonl`` for the regression windows) or ``"source": "cloudwatch"`` with
  ``"cloudwatch": {"load_balancer": "app/<name>/<id>", "target_group"?: "targetgroup/<name>/<id>",
  "start": <epoch s | ISO-8601>, "end": <epoch s | ISO-8601>, "endpoint"?: "alb"}`` (ALB metrics, see
  :mod:`lambdas.slo.cloudwatch`); optional ``"duration_s"`` (the load phase's length, for throughput).
- **recovery**: ``faults.jsonl`` + ``health.jsonl`` (+ ``ledger.jsonl`` for error-ratio windows). On AWS
  the ``timeline`` step writes them, in the local runner's formats, from the FIS experiments' state and
  the target services' ECS tasks (see below). Optional ``"observed_until"`` (epoch seconds): the end of the
  health observation (the state machine passes the timeline's).
- **retryable**: ``ledger.jsonl``.
- **integrity** / **replay**: ``"config"`` (their ``checks.<name>`` section; ``"thresholds"`` is accepted
  too), ``"db_secret_arn"`` (else env ``DB_SECRET_ARN``: a Secrets Manager secret with the RDS JSON
  ``{host, port, username, password, dbname}``) and ``"kafka_bootstrap"`` (else env ``KAFKA_BOOTSTRAP``:
  the MSK bootstrap brokers). Optional ``"quiesce": {"settled": false, "reason": "..."}`` from the
  quiesce step makes the result unknown (state compared before it settles proves nothing), as locally.

Output of a check Lambda: ``{name, valid: true | false | "unknown", counts, examples, error?, details?}``.
A check that cannot decide (missing or malformed evidence, no data) returns ``valid: "unknown"`` with the
reason in ``error``: it fails closed in the verdict. Invalid events or thresholds raise
``ConfigError``; infrastructure failures (S3, Secrets Manager, database, Kafka) are
logged and raised as ``GateError``, so the state machine can retry them and its Catch
turns them into an unknown result.

Every check Lambda logs with the run id as correlation id and emits EMF metrics in the namespace
``ResilienceGate`` with dimensions ``service, gate, check``: ``CheckValid``, ``CheckFailed``,
``CheckUnknown`` (0/1), every numeric count of the result under its own name (``p95_ms``, ``lost``,
``not_allowed``, ``max_time_to_healthy_s``…, unit from the suffix), and ``CheckErrored`` = 1 when the
handler raised. The verdict emits ``GatePassed`` (0/1), ``ChecksFailed`` and ``ChecksUnknown``.

Event of the timeline Lambda (``lambdas.timeline``): the run fields above plus ``"cluster"`` (the target's
ECS cluster), ``"services"`` ({gate config service name: ECS service name}), ``"faults"`` ({fault key:
{name, kind, target}}), ``"experiments"`` ({fault key: {id}}, the state machine's ``$.experiments``: the
experiments started in this run), ``"started_at"`` / ``"ended_at"`` (epoch seconds or ISO-8601: the run
window). It writes ``faults.jsonl`` (``{ts, fault_id, kind, target, event, detail, experiment_id,
status}``: injected / ended / aborted from ``fis:GetExperiment``) and ``health.jsonl`` (``{ts, service,
replica, event, detail, ecs_service, task_arn}``: started / healthy / stopped / retired per ECS task, the
replica being the task id; how "healthy" is approximated is in :mod:`lambdas.timeline.health`) and returns
``{faults_uri, health_uri, fault_events, health_events, observed_until, active_faults, not_started}``. An
invalid event is a ConfigError, any AWS failure a GateError (the run is cleaned up and fails).

The cleanup Lambda (``lambdas.cleanup``) is not called by the state machine: an EventBridge rule invokes it
with the *Step Functions Execution Status Change* event of an execution that ended ABORTED, TIMED_OUT (the
state machine's own cleanup branch cannot run then) or FAILED. It stops the run's load task and the gate's
running FIS experiments of that run; see :mod:`lambdas.cleanup.stops`.

Event of the verdict Lambda: the run fields above plus ``"results": [<check output>, ...]`` (the Parallel
state's output; a branch output may also be a Lambda invoke response ``{"Payload": {...}}`` or a Catch
output ``{"name": <check>, "Error": ..., "Cause": ...}``), optional ``"checks": [names expected]`` (a
missing one counts as unknown), ``"unknown_is_failure": true``, ``"started_at": <epoch s>``,
``"guardrail_tripped": <reason>`` and ``"error": <why the run could not finish>``. It writes
``verdict.json``, ``checks.jsonl``, ``report.md`` and ``junit.xml`` to the run prefix and returns
``{passed, result, failed_checks, unknown_checks, evidence_uri}``; the state machine's Choice branches on
``passed``.
"""

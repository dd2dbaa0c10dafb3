"""`resgate aws`: run the gate on a deployed stack (``start``), read a run's report from S3 (``report``) and
query the evidence with Athena (``query``), with the exit codes of ``resgate run``.

Everything is found from the stack's outputs (``infra/gate_stack.py``: ``StateMachineArn``,
``EvidenceBucket``, ``GlueDatabase``, ``AthenaWorkGroup``, ``GateName``, ``EvidencePrefix``). ``start``
names the execution with a new run id (the execution name is the run id), follows its history
(``GetExecutionHistory``: each state entered, shown under the local runner's phase names) and ends with the
verdict's ``exit_code`` from ``verdict.json``, else from the execution's status: a passing execution is 0, a
``GateFailed`` one 1, any other ending without a verdict 2. boto3 clients are passed in (:class:`Clients`),
so tests give moto's.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from resgate.contract.constants import EXIT_CANNOT_RUN, EXIT_FAIL, EXIT_PASS
from resgate.contract.errors import ConfigError, EvidenceMissing, GateError
from resgate.contract.layout import RunKey, new_run_id
from resgate.evidence.query import format_table
from resgate.evidence.s3 import S3Store
from resgate.evidence.verdict import exit_code_of

# Where the workgroup keeps results (infra.constants.ATHENA_RESULTS_PREFIX; the workgroup enforces it).
ATHENA_RESULTS_PREFIX = "athena-results"
DEFAULT_EVIDENCE_PREFIX = "evidence"
# The Fail state of a failed verdict (infra/state_machine/verdict.py): the gate ran and failed.
GATE_FAILED_ERROR = "GateFailed"
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})

# State name (its start) -> the local runner's phase; first match wins, so cleanup's states come first.
PHASE_OF_STATE: tuple[tuple[str, str], ...] = (
    ("Cleanup", "cleanup"),
    ("Release lock after error", "cleanup"),
    ("Stop ", "cleanup"),
    ("Record error verdict", "cleanup"),
    ("Notify error", "cleanup"),
    ("GateRunFailed", "cleanup"),
    ("Start load task", "load"),
    ("Describe load task", "load"),
    ("Baseline", "load"),
    ("Schedule faults", "load"),  # computed at the load's start, before the baseline
    ("Select profile faults", "load"),
    ("Before ", "faults"),
    ("Start ", "faults"),
    ("Recheck ", "faults"),
    ("Get ", "faults"),
    ("Wait for load end", "quiesce"),
    ("Describe finished load task", "quiesce"),
    ("Quiesce", "quiesce"),
    ("Write timeline", "assertions"),
    ("Assertions", "assertions"),
    ("Check ", "assertions"),
    ("Verdict", "verdict"),
    ("Release lock", "verdict"),
    ("Passed?", "verdict"),
    ("Notify failed", "verdict"),
    ("Gate passed", "verdict"),
    ("Gate failed", "verdict"),
)


def phase_of(state: str) -> str | None:
    """The local runner's phase of a state (``"Start load task"`` → ``"load"``), None when it has none of
    its own (it belongs to the phase already under way; before the load that is preflight)."""
    return next((phase for prefix, phase in PHASE_OF_STATE if state.startswith(prefix)), None)


@dataclass(frozen=True)
class StackOutputs:
    """What ``resgate aws`` needs of a gate stack, from its CloudFormation outputs."""

    state_machine_arn: str
    bucket: str
    database: str
    workgroup: str
    gate: str
    evidence_prefix: str = DEFAULT_EVIDENCE_PREFIX

    @classmethod
    def from_outputs(cls, stack: str, outputs: Mapping[str, str]) -> StackOutputs:
        """Raises ConfigError naming the missing outputs."""
        need = ("StateMachineArn", "EvidenceBucket", "GlueDatabase", "AthenaWorkGroup", "GateName")
        missing = [k for k in need if not outputs.get(k)]
        if missing:
            raise ConfigError(f"stack {stack} has no output {', '.join(missing)}", where="--stack")
        return cls(
            state_machine_arn=outputs["StateMachineArn"],
            bucket=outputs["EvidenceBucket"],
            database=outputs["GlueDatabase"],
            workgroup=outputs["AthenaWorkGroup"],
            gate=outputs["GateName"],
            evidence_prefix=outputs.get("EvidencePrefix") or DEFAULT_EVIDENCE_PREFIX,
        )


@dataclass
class Clients:
    """The boto3 clients used (any may be None when the command does not need it)."""

    cloudformation: Any = None
    stepfunctions: Any = None
    s3: Any = None
    athena: Any = None

    @classmethod
    def create(cls, *, region: str | None = None, aws_profile: str | None = None) -> Clients:
        import boto3

        session = boto3.Session(region_name=region, profile_name=aws_profile)
        return cls(*(session.client(s) for s in ("cloudformation", "stepfunctions", "s3", "athena")))


def _aws(action: str, call: Callable[[], Any]) -> Any:
    """``call()``; an AWS failure becomes a GateError naming ``action``."""
    try:
        return call()
    except (ClientError, BotoCoreError) as e:
        raise GateError(f"could not {action}: {e}") from e


def stack_outputs(cloudformation: Any, stack: str) -> StackOutputs:
    """The stack's outputs (``DescribeStacks``); an unknown stack is a ConfigError."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as e:
        if "does not exist" in str(e):
            raise ConfigError(f"no stack {stack!r}", where="--stack") from e
        raise GateError(f"could not describe stack {stack}: {e}") from e
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return StackOutputs.from_outputs(stack, outputs)


# ------------------------------------------------------------------------------------------------- start
def history_events(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of the execution so far, oldest first (``GetExecutionHistory``, paginated)."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = _aws("read the execution history", lambda: sfn.get_execution_history(**kwargs))
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def follow(
    sfn: Any,
    execution_arn: str,
    out: TextIO,
    *,
    poll_s: float = 2.0,
    timeout_s: float = 6 * 3600.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Print each phase as the execution enters it (and each fault it starts) until it ends; return its
    ``DescribeExecution``. Raises GateError when it still runs after ``timeout_s``."""
    seen, phase, started = 0, "", clock()
    while True:
        d = _aws("describe the execution", lambda: sfn.describe_execution(executionArn=execution_arn))
        events = history_events(sfn, execution_arn)
        for e in events[seen:]:
            state = (e.get("stateEnteredEventDetails") or {}).get("name")
            if not state:
                continue
            new = phase_of(state) or phase or "preflight"
            if new != phase:
                print(f"[{clock() - started:6.0f}s] {new:<11} {state}", file=out, flush=True)
                phase = new
            elif phase == "faults" and state.startswith("Start "):
                print(f"[{clock() - started:6.0f}s] {'':<11} {state}", file=out, flush=True)
        seen = len(events)
        if d["status"] in FINAL_STATUSES:
            return d
        if clock() - started > timeout_s:
            raise GateError(f"execution {execution_arn} still {d['status']} after {timeout_s:.0f}s")
        sleep(poll_s)


def run_key(outputs: StackOutputs, execution: Mapping[str, Any]) -> RunKey:
    """The run of an execution: its name is the run id, ``dt`` the UTC date of its start."""
    start = execution["startDate"]
    if isinstance(start, str):
        start = dt.datetime.fromisoformat(start)
    return RunKey(
        gate=outputs.gate, date=start.astimezone(dt.UTC).strftime("%Y-%m-%d"), run_id=execution["name"]
    )


def read_verdict(s3: Any, outputs: StackOutputs, key: RunKey) -> dict[str, Any] | None:
    """The run's ``verdict.json``, or None when it has none (yet)."""
    store = S3Store(outputs.bucket, outputs.evidence_prefix, key, client=s3)
    try:
        return json.loads(store.read_text("verdicts"))
    except EvidenceMissing:
        return None


def exit_code(execution: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> int:
    """The verdict's ``exit_code``; without a verdict: 0 for SUCCEEDED, 1 for a ``GateFailed`` ending
    (the state machine's failed verdict), else 2 (the gate could not run to a verdict)."""
    if verdict is not None and isinstance(verdict.get("exit_code"), int):
        return int(verdict["exit_code"])
    if execution["status"] == "SUCCEEDED":
        return EXIT_PASS
    if execution.get("error") == GATE_FAILED_ERROR:
        return EXIT_FAIL
    return EXIT_CANNOT_RUN


def _output_verdict(execution: Mapping[str, Any]) -> dict[str, Any] | None:
    """The verdict a passing execution outputs (``Gate passed``), when it has one."""
    try:
        out = json.loads(execution.get("output") or "null")
    except ValueError:
        return None
    return out if isinstance(out, dict) and "result" in out else None


def start(
    clients: Clients,
    outputs: StackOutputs,
    *,
    out: TextIO,
    profile: str | None = None,
    wait: bool = False,
    extra_input: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    poll_s: float = 2.0,
) -> int:
    """Start an execution (name = a new run id; input ``{"profile": …}`` plus ``extra_input``); with
    ``wait`` follow it and return the verdict's exit code, else 0 once started."""
    body = {**(extra_input or {}), **({"profile": profile} if profile else {})}
    name = run_id or new_run_id()
    started = _aws(
        "start the execution",
        lambda: clients.stepfunctions.start_execution(
            stateMachineArn=outputs.state_machine_arn, name=name, input=json.dumps(body)
        ),
    )
    arn = started["executionArn"]
    print(f"run {name} started{f' (profile {profile})' if profile else ''}: {arn}", file=out, flush=True)
    if not wait:
        return EXIT_PASS
    d = follow(clients.stepfunctions, arn, out, poll_s=poll_s)
    key = run_key(outputs, d)
    verdict = read_verdict(clients.s3, outputs, key) or _output_verdict(d)
    code = exit_code(d, verdict)
    if verdict is not None:
        reason = verdict.get("reason") or ""
        print(f"VERDICT: {verdict.get('result')}" + (f" — {reason}" if reason else ""), file=out)
    else:
        print(f"execution {d['status']}: {d.get('error') or ''} {d.get('cause') or ''}".rstrip(), file=out)
    print(f"report:   s3://{outputs.bucket}/{outputs.evidence_prefix}/{key.prefix}/report.md", file=out)
    return code


# ------------------------------------------------------------------------------------------------ report
def _list_prefixes(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    """The common prefixes (folders) right under ``prefix``."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in _aws(
        "list the evidence", lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"))
    ):
        for p in page.get("CommonPrefixes", []):
            yield p["Prefix"]


def find_run(s3: Any, outputs: StackOutputs, run_id: str) -> RunKey | None:
    """The run ``run_id`` of the stack's gate (``latest``: the newest run with a verdict), or None.

    A run id made by ``resgate`` starts with its UTC date, which is tried first; otherwise the gate's days
    are looked through, newest first."""
    gate_prefix = f"{outputs.evidence_prefix}/gate={outputs.gate}/"
    if run_id in ("latest", "last"):
        for day in sorted(_list_prefixes(s3, outputs.bucket, f"{gate_prefix}verdicts/"), reverse=True):
            keys = [
                RunKey.parse(r.replace("/verdicts/", "/"))[1] for r in _list_prefixes(s3, outputs.bucket, day)
            ]
            started = {k: (read_verdict(s3, outputs, k) or {}).get("started_at") or 0.0 for k in keys}
            if started:
                return max(keys, key=lambda k: (started[k], k.run_id))
        return None
    folders = _list_prefixes(s3, outputs.bucket, gate_prefix)
    days = [p.rstrip("/").rsplit("dt=", 1)[1] for p in folders if "/dt=" in p]
    guess = f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}"
    for day in sorted(days, key=lambda d: (d != guess, [-ord(c) for c in d])):
        key = RunKey(gate=outputs.gate, date=day, run_id=run_id)
        store = S3Store(outputs.bucket, outputs.evidence_prefix, key, client=s3)
        if store.exists("report") or store.exists("verdicts") or store.exists("config"):
            return key
    return None


def report(clients: Clients, outputs: StackOutputs, run_id: str, *, out: TextIO) -> int:
    """Print the run's ``report.md``; return its verdict's exit code (2 without a run or a verdict)."""
    key = find_run(clients.s3, outputs, run_id)
    if key is None:
        raise ConfigError(f"no run {run_id!r} of gate {outputs.gate} in s3://{outputs.bucket}", where="RUN")
    store = S3Store(outputs.bucket, outputs.evidence_prefix, key, client=clients.s3)
    try:
        print(store.read_text("report"), file=out, end="")
    except EvidenceMissing:
        print(f"(no report.md in {store.uri()})", file=out)
    verdict = read_verdict(clients.s3, outputs, key)
    if verdict is None:
        return EXIT_CANNOT_RUN
    return exit_code_of(verdict)


# ------------------------------------------------------------------------------------------------- query
def athena_query(
    athena: Any,
    outputs: StackOutputs,
    sql: str,
    *,
    poll_s: float = 1.0,
    timeout_s: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` in the stack's workgroup and database; return (column names, rows of strings/None).
    A failed or cancelled query is a ConfigError with Athena's reason."""
    qid = _aws(
        "start the Athena query",
        lambda: athena.start_query_execution(
            QueryString=sql,
            WorkGroup=outputs.workgroup,
            QueryExecutionContext={"Database": outputs.database},
            ResultConfiguration={"OutputLocation": f"s3://{outputs.bucket}/{ATHENA_RESULTS_PREFIX}/"},
        ),
    )["QueryExecutionId"]
    waited = 0.0
    while True:
        status = _aws("read the Athena query", lambda: athena.get_query_execution(QueryExecutionId=qid))
        state = status["QueryExecution"]["Status"]
        if state["State"] == "SUCCEEDED":
            break
        if state["State"] in ("FAILED", "CANCELLED"):
            reason = state.get("StateChangeReason") or state["State"].lower()
            raise ConfigError(f"query failed: {reason}", where="sql")
        if waited > timeout_s:
            raise GateError(f"Athena query {qid} still {state['State']} after {timeout_s:.0f}s")
        sleep(poll_s)
        waited += poll_s
    cols: list[str] = []
    rows: list[tuple[Any, ...]] = []
    paginator = athena.get_paginator("get_query_results")
    for i, page in enumerate(
        _aws("read the query results", lambda: list(paginator.paginate(QueryExecutionId=qid)))
    ):
        rs = page["ResultSet"]
        if i == 0:
            cols = [c["Name"] for c in rs.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
        data = [tuple(d.get("VarCharValue") for d in r.get("Data", [])) for r in rs.get("Rows", [])]
        # The first row of a SELECT's first page repeats the column names.
        if i == 0 and data and list(data[0]) == cols:
            data = data[1:]
        rows.extend(data)
    return cols, rows


def query(clients: Clients, outputs: StackOutputs, sql: str, *, out: TextIO, as_json: bool = False) -> int:
    """Print an Athena query's result as ``resgate query`` prints DuckDB's."""
    cols, rows = athena_query(clients.athena, outputs, sql)
    if as_json:
        print(json.dumps([dict(zip(cols, r, strict=False)) for r in rows], indent=2), file=out)
    else:
        print(format_table(cols, rows), file=out)
    return EXIT_PASS


# ------------------------------------------------------------------------------------------- golden profile
def set_baseline(clients: Clients, outputs: StackOutputs, run_id: str, *, out: TextIO) -> int:
    """Record a passing run's phases (``RUN_ID`` or ``latest``) as the stack's gate's golden profile, under
    the same S3 prefix as its runs (``<prefix>/gate=<name>/golden/profile.json``); the SLO Lambda compares
    every later run with it. A failing or unfinished run is a ConfigError."""
    from resgate.evidence.golden import profile_of_run, write_golden

    key = find_run(clients.s3, outputs, run_id)
    if key is None:
        raise ConfigError(f"no run {run_id!r} of gate {outputs.gate} in s3://{outputs.bucket}", where="RUN")
    store = S3Store(outputs.bucket, outputs.evidence_prefix, key, client=clients.s3)
    profile = profile_of_run(store)
    where = write_golden(store, profile)
    n = len(profile.phases)
    print(f"golden profile of gate {profile.gate}: run {profile.run_id} ({n} phases) -> {where}", file=out)
    return EXIT_PASS


def show_baseline(clients: Clients, outputs: StackOutputs, *, out: TextIO, as_json: bool = False) -> int:
    """Print the stack's gate's golden profile from the bucket (``resgate baseline show``'s output), or say
    that none is set: the SLO Lambda then judges the absolute limits only."""
    from resgate.evidence.golden import golden_uri, profile_text, read_golden

    store = S3Store(
        outputs.bucket, outputs.evidence_prefix, RunKey(outputs.gate, "-", "-"), client=clients.s3
    )
    profile = read_golden(store)
    if profile is None:
        print(
            f"no golden profile at {golden_uri(store)}: no baseline (runs are not judged against one)",
            file=out,
        )
        return EXIT_PASS
    print(profile_text(profile, golden_uri(store), as_json=as_json), file=out)
    return EXIT_PASS

"""Run a state machine definition in moto with mocked task responses (a shim for moto 5.2.5 internals).

moto 5.2.5 executes ASL (``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``) and
carries Step Functions Local's *mocked responses* (``Return`` / ``Throw`` per state), but does not wire
them: no mock config is ever loaded. This shim hands a :class:`MockedRun` to the execution worker of the
execution with a given name, and answers each task state from it:

- responses are indexed by the number of times *this state* was called in the run (Step Functions
  Local indexes by retry count, which resets whenever a polling loop re-enters the state, so a
  Wait → Get → Choice loop would never end); past the last response the last one repeats;
- ``$$.Execution.StartTime`` is an ISO-8601 string, as on AWS (moto passes a datetime);
- ``calls`` records every mocked call (state names, in order) so a test can assert that cleanup ran;
- JSONata expressions (a state with ``"QueryLanguage": "JSONata"``, e.g. the fault schedule) are evaluated
  by ``jsonata-python``, a port of the jsonata-java that LocalStack uses: moto 5.2.5 ships that engine's
  JVM bridge stubbed out (``_eval_jsonata`` is None);
- the DynamoDB tables the definition's optimized ``dynamodb:*`` tasks name (the run lock) exist in moto
  when an execution starts, as the stack creates them: those tasks are not mocked but run against moto's
  DynamoDB, so the lock really holds between executions (:func:`create_dynamodb_tables`);
- the definition is parsed once per process and each execution evaluates its own deep copy of that
  pristine parse (:func:`program`): moto parses the 68 KB definition with ANTLR at every execution
  (0.45–1.4 s, some hundred executions in the suite), a copy takes a tenth of that. moto 5.2.5 keeps an
  execution's state in its environment (a retrier's attempts in ``env.heap``), not in the parse, but the
  cached parse is never evaluated itself all the same, so no component can carry one execution's state
  into the next; a copy that is not equal to a fresh parse would show in
  ``test_an_execution_of_the_cached_parse_is_the_execution_of_a_fresh_parse`` (test_state_machine),
  which runs executions each way and compares their events;
- each execution signals its end (:func:`wait_for_end` waits for that signal instead of polling
  ``describe_execution``: every poll is a moto request that takes the interpreter thread's GIL, which
  made the polling loop a third of a state machine test's time).

Every other task state of the definition must be mocked (an unmocked ``aws-sdk:*`` task would call moto's
own services with unconverted parameters). Written for moto 5.2.5: :data:`MOTO_VERSION`.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import boto3
import jsonata
import moto
import moto.stepfunctions.parser.asl.jsonata.jsonata as moto_jsonata
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.parser.mocking.mock_config import MockedResponseReturn, MockedResponseThrow
from moto.stepfunctions.responses import StepFunctionResponse

MOTO_VERSION = "5.2.5"

# Execution ARN -> set once moto has recorded that execution's end (while :func:`mocked_responses` is
# entered); :func:`wait_for_end` waits on it.
_ENDED: dict[str, threading.Event] = {}

# Definition -> its parse, never evaluated (:func:`program`).
_PARSED: dict[str, EvalComponent] = {}
_PARSED_LOCK = threading.Lock()
_PARSED_MAX = 16


def program(definition: str) -> EvalComponent:
    """A fresh evaluation tree of ``definition``: a deep copy of its one parse in this process."""
    with _PARSED_LOCK:
        pristine = _PARSED.get(definition)
        if pristine is None:
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            pristine = _PARSED[definition] = AmazonStateLanguageParser.parse(definition)[0]
        return copy.deepcopy(pristine)


@dataclass(frozen=True)
class Return:
    """The task's result (for ``lambda:invoke`` the whole invoke response: ``{"Payload": ...}``)."""

    payload: Any


@dataclass(frozen=True)
class Throw:
    """The task fails with ``error`` / ``cause``."""

    error: str
    cause: str = ""


@dataclass(frozen=True)
class Hold:
    """The task answers ``then`` only once ``release`` is set: the execution waits in that state for as
    long as the test needs it, however loaded the machine (a Wait of N seconds is a race). A hold never
    released within ``timeout_s`` fails the task with ``HoldNotReleased``."""

    release: threading.Event
    then: Return | Throw
    timeout_s: float = 120.0


Response = Return | Throw | Hold


class _StateResponses:
    """What moto's ``is_mocked_mode`` looks for: presence of the state name in ``state_mocked_responses``."""

    def __init__(self, responses: Sequence[Response]) -> None:
        self.mocked_responses = list(responses)


@dataclass
class MockedRun:
    """The mocked responses of one execution and the calls made (state names, in order)."""

    name: str
    responses: Mapping[str, Sequence[Response]]
    calls: list[str] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # The attributes moto reads from a MockTestCase.
    @property
    def state_machine_name(self) -> str:
        return "gate"

    @property
    def test_case_name(self) -> str:
        return self.name

    @property
    def state_mocked_responses(self) -> dict[str, _StateResponses]:
        return {s: _StateResponses(r) for s, r in self.responses.items()}

    def next_response(self, state: str) -> MockedResponseReturn | MockedResponseThrow:
        with self._lock:
            n = self._counts.get(state, 0)
            self._counts[state] = n + 1
            self.calls.append(state)
        options = self.responses[state]
        r = options[min(n, len(options) - 1)]
        if isinstance(r, Hold):
            if not r.release.wait(r.timeout_s):
                return MockedResponseThrow(0, 0, error="HoldNotReleased", cause=f"{state}: {r.timeout_s} s")
            r = r.then
        if isinstance(r, Throw):
            return MockedResponseThrow(0, 0, error=r.error, cause=r.cause)
        return MockedResponseReturn(0, 0, payload=json.loads(json.dumps(r.payload)))

    def count(self, state: str) -> int:
        return self.calls.count(state)


class SfnMockShim:
    """Registry of mocked runs by execution name, active while :func:`mocked_responses` is entered."""

    def __init__(self) -> None:
        self.runs: dict[str, MockedRun] = {}

    def register(self, execution_name: str, responses: Mapping[str, Sequence[Response]]) -> MockedRun:
        run = MockedRun(name=execution_name, responses=dict(responses))
        self.runs[execution_name] = run
        return run


def iso_start_time(worker: Any) -> Any:
    """An execution worker whose ``$$.Execution.StartTime`` is an ISO-8601 string, as on AWS (moto hands
    the definition a datetime); returns ``worker``."""
    details = worker._evaluation_details.execution_details
    if isinstance(details.start_time, datetime.datetime):
        details.start_time = (
            details.start_time.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        )
    return worker


@contextlib.contextmanager
def mocked_responses() -> Iterator[SfnMockShim]:
    """Patch moto so that executions named in the shim's registry answer their tasks from it."""
    if moto.__version__ != MOTO_VERSION:  # pragma: no cover - guards the internals this relies on
        raise RuntimeError(f"sfn_mock was written for moto {MOTO_VERSION}, found {moto.__version__}")
    shim = SfnMockShim()
    original_worker = Execution._get_start_execution_worker
    original_response = Environment.get_current_mocked_response
    original_terminated = BaseExecutionWorkerCommunication.terminated
    started: list[str] = []

    def worker(self: Execution) -> Any:
        create_dynamodb_tables(self.state_machine.definition, region=self.region_name)
        _ENDED[self.exec_arn] = threading.Event()
        started.append(self.exec_arn)
        w = iso_start_time(original_worker(self))
        run = shim.runs.get(self.name)
        if run is not None:
            w._mock_test_case = run
        return w

    def entrypoint(self: ExecutionWorker) -> EvalComponent:
        return program(self._evaluation_details.state_machine_details.definition)

    def current_response(self: Environment) -> Any:
        if isinstance(self.mock_test_case, MockedRun):
            return self.mock_test_case.next_response(self.next_state_name)
        return original_response(self)

    def terminated(self: BaseExecutionWorkerCommunication) -> None:
        try:
            original_terminated(self)  # the status, error, cause and output, then the signal
        finally:
            ended = _ENDED.get(self.execution.exec_arn)
            if ended is not None:
                ended.set()

    try:
        with (
            mock.patch.object(StepFunctionResponse, "get_execution_history", history_response),
            mock.patch.object(Execution, "_get_start_execution_worker", worker),
            mock.patch.object(Environment, "get_current_mocked_response", current_response),
            mock.patch.object(BaseExecutionWorkerCommunication, "terminated", terminated),
            mock.patch.object(moto_jsonata, "_eval_jsonata", eval_jsonata),
            mock.patch.object(ExecutionWorker, "_get_evaluation_entrypoint", entrypoint),
        ):
            yield shim
    finally:
        for arn in started:
            _ENDED.pop(arn, None)


def history_response(self: StepFunctionResponse) -> str:
    """``GetExecutionHistory``'s body as moto's backend holds it, written with ``json.dumps``.

    moto's generic serializer walks every member of the ``HistoryEvent`` shape (some sixty event detail
    structures) for each event: a long run's history took 0.3 s on a quiet machine and 1.7 s at a load
    average of 15, and the infra tests read one per execution. The backend's events are already the API's
    shapes (member names as on the wire); timestamps go out as epoch seconds, as the JSON protocol sends
    them, and absent members are left out, as the serializer leaves them."""
    events = self.stepfunction_backend.get_execution_history(self._get_param("executionArn"))["events"]
    return json.dumps({"events": [_wire(e) for e in events]})


def _wire(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return value


def dynamodb_table_names(definition: str | Mapping[str, Any]) -> set[str]:
    """The ``TableName`` of every optimized ``dynamodb:*`` task in a definition (nested states included)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            resource = node.get("Resource")
            if isinstance(resource, str) and ":states:::dynamodb:" in resource:
                name = (node.get("Parameters") or {}).get("TableName")
                if isinstance(name, str):
                    found.add(name)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(definition) if isinstance(definition, str) else definition)
    return found


def create_dynamodb_tables(definition: str | Mapping[str, Any], *, region: str) -> None:
    """Create (in moto, once) each table the definition names, keyed as :mod:`infra.run_lock` keys it."""
    from lambdas.common.settings import LOCK_KEY_ATTRIBUTE

    client = boto3.client("dynamodb", region_name=region)
    existing = set(client.list_tables()["TableNames"])
    for name in dynamodb_table_names(definition) - existing:
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": LOCK_KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": LOCK_KEY_ATTRIBUTE, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def eval_jsonata(expression: str) -> Any:
    """Evaluate a JSONata expression as moto composes it (its bindings declared inline); plain JSON out."""
    return json.loads(json.dumps(jsonata.Jsonata(expression).evaluate(None)))


def wait_for_end(client: Any, execution_arn: str, *, timeout_s: float = 120.0) -> dict[str, Any]:
    """Poll ``describe_execution`` until the execution is no longer RUNNING (bounded); return it.

    The bound only stops a runaway test: what a test proves about bounded polling it counts in states, not
    in seconds. moto interprets the definition in a thread, so its wall time follows the machine's load:
    the longest polling loops took 5-10 s on a quiet machine and passed 20 s at a load average of 7 on 2
    cores (both ``never ends`` loops failed then).

    An execution started under :func:`mocked_responses` is awaited on its end signal, then described once
    (the loop below then ends at its first turn); any other is polled every 20 ms."""
    deadline = time.monotonic() + timeout_s
    ended = _ENDED.get(execution_arn)
    if ended is not None:
        ended.wait(timeout_s)
    while True:
        d = client.describe_execution(executionArn=execution_arn)
        if d["status"] != "RUNNING":
            return d
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout_s} s")
        time.sleep(0.02)


def entered_in(events: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names of the states entered in a history's ``events``, in order. Read from the history a test
    already holds: moto serializes a history member by member, about a second per call of a long run on a
    loaded machine."""
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]

"""How the twins are bound to the ASL interpreter (moto 5.2.5's) and to the Lambdas' own AWS clients.

moto's interpreter reaches every service integration through one function, ``boto_client_for(region,
service, credentials)``, imported by name into each integration module (``lambda:invoke``,
``ecs:runTask``, ``sns:publish``, ``aws-sdk:*``). :func:`twins_bound` replaces it in those modules with a
registry lookup: a service with a twin gets the twin, any other fails the task state
(``NoTwin``). On AWS, Step Functions converts an ``aws-sdk:`` task's PascalCase parameters to the API's
member names and its response back to PascalCase; :class:`SdkCasing` does that with botocore's model, so a
twin speaks the API's own names and both callers (the interpreter, and a Lambda's boto3 through
:class:`TwinEndpoint`) reach the same method. Twin errors become botocore ``ClientError``s.

:class:`TwinEndpoint` serves the ECS (JSON 1.1) and FIS (REST-JSON) twins over HTTP on 127.0.0.1 for the
Lambda subprocesses (``AWS_ENDPOINT_URL_ECS`` / ``AWS_ENDPOINT_URL_FIS``; the SSM twin, OpsCenter's
``CreateOpsItem``, at ``AWS_ENDPOINT_URL_SSM``), and answers the Lambdas' and tasks' own boto3 before each
call they make to S3, Secrets Manager and DynamoDB (:mod:`.sdk_guard`, ``POST`` :data:`.sdk_guard.PATH`).

Error names: Step Functions names an ``aws-sdk:`` task's error ``<Service>.<ErrorCode>`` with the service in
PascalCase (``Ecs.ThrottlingException``, what the definition's Retry lists); moto 5.2.5 keeps the lower-case
service name for all but two services, so :func:`twins_bound` capitalises it. ``throttle_once`` makes
the first call of every ``aws-sdk:`` task state fail with ``ThrottlingException`` (a modelled botocore
error, as boto3 raises it), so each one is retried once.

Limits as AWS enforces them: moto already fails a state whose data exceeds 256 KiB with
``States.DataLimitExceeded``, but its ``States.ALL`` catches it; :func:`twins_bound` makes ``States.ALL``
match neither it nor ``States.Runtime``, as on AWS (:data:`UNCATCHABLE`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import botocore.session
import moto.stepfunctions.parser.asl.jsonata.jsonata as moto_jsonata
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator
from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
    state_task_service_dynamodb,
    state_task_service_ecs,
    state_task_service_sns,
)
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.responses import StepFunctionResponse

from tests.infra.support.sfn_mock import eval_jsonata, history_response, iso_start_time
from tests.rehearsal.support import sdk_guard

_AwsSdkTask = state_task_service_aws_sdk.StateTaskServiceAwsSdk
_MODULES = (
    lambda_eval_utils,
    state_task_service_aws_sdk,
    state_task_service_dynamodb,
    state_task_service_ecs,
    state_task_service_sns,
)
# States.ALL matches every error but these two, in a Retry as in a Catch (AWS Step Functions developer
# guide, "Error handling in Step Functions"): a state whose data exceeds 256 KiB (moto checks every state's
# output against that quota) and a runtime error end the execution whatever its Catch says.
UNCATCHABLE = (StatesErrorNameType.StatesStatesDataLimitExceeded, StatesErrorNameType.StatesRuntime)
# Twins that take and return the API's own member names (PascalCase already): called as they are.
_PASCAL_APIS = ("s3", "sns", "dynamodb")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
# SigV4: "AWS4-HMAC-SHA256 Credential=<access key id>/<date>/<region>/<service>/aws4_request, ..."
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")


class NoTwin(Exception):
    """A task called a service this rehearsal has no twin for."""


def request_errors(service: str, operation: str, params: Mapping[str, Any]) -> str:
    """botocore's ``ParamValidator`` report of ``params`` against the operation's input shape (the API's
    member names); empty when valid. A twin refuses what AWS would refuse."""
    model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    report = ParamValidator().validate(dict(params), model.input_shape)
    return report.generate_report() if report.has_errors() else ""


class SsmTwin:
    """OpsCenter: ``CreateOpsItem`` validated against botocore's model and recorded (``ops_items``)."""

    def __init__(self) -> None:
        self.ops_items: list[dict[str, Any]] = []

    def create_ops_item(self, **p: Any) -> dict[str, Any]:
        errors = request_errors("ssm", "CreateOpsItem", p)
        if errors:
            raise _client_error("ValidationException", errors, "CreateOpsItem")
        op_id = f"oi-{len(self.ops_items) + 1:012x}"
        self.ops_items.append({"OpsItemId": op_id, **p})
        return {"OpsItemId": op_id, "OpsItemArn": f"arn:aws:ssm:us-east-1:123456789012:opsitem/{op_id}"}


class ThrottlingException(ClientError):
    """What boto3 raises for a throttled call (a modelled error: its class is named after the code)."""

    def __init__(self, op: str) -> None:
        meta = {"HTTPStatusCode": 400, "RequestId": "rehearsal"}
        error = {"Code": "ThrottlingException", "Message": "Rate exceeded (injected by the rehearsal)"}
        super().__init__({"Error": error, "ResponseMetadata": meta}, op)


def _client_error(code: str, message: str, op: str) -> ClientError:
    meta = {"HTTPStatusCode": 400, "RequestId": "rehearsal"}
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, op)


def _modelled_error(code: str, message: str, op: str) -> ClientError:
    """A botocore modelled error: a ClientError subclass named after its code (``client.exceptions.X``)."""
    meta = {"HTTPStatusCode": 400, "RequestId": "rehearsal"}
    cls = type(code, (ClientError,), {})
    return cls({"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, op)


def _convert(value: Any, shape: Any, *, to_api: bool) -> Any:
    """Rename structure members: PascalCase → the API's names (``to_api``) or the API's → PascalCase."""
    if shape is None:
        return value
    if shape.type_name == "structure" and isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if to_api:
                name = next((m for m in shape.members if m.lower() == k.lower()), k)
            else:
                name = k[:1].upper() + k[1:]
            member = shape.members.get(name if to_api else k)
            out[name] = _convert(v, member, to_api=to_api)
        return out
    if shape.type_name == "list" and isinstance(value, list):
        return [_convert(v, shape.member, to_api=to_api) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _convert(v, shape.value, to_api=to_api) for k, v in value.items()}
    if shape.type_name == "timestamp" and isinstance(value, (int, float)) and not to_api:
        return datetime.datetime.fromtimestamp(value, datetime.UTC).isoformat()
    return value


class SdkCasing:
    """A twin as the interpreter calls it: ``client.describe_tasks(**params)``. PascalCase parameters (an
    ``aws-sdk:`` task) are converted to the API's names (an optimized integration's come converted by
    moto), and the response to PascalCase, as Step Functions returns it."""

    def __init__(self, service: str, twin: Any) -> None:
        self.service = service
        self.twin = twin
        self.model = botocore.session.get_session().get_service_model(service)
        self.errors = {e.name for e in self.model.error_shapes}

    def __getattr__(self, op: str) -> Any:
        method = getattr(self.twin, op)
        api_name = "".join(p.title() for p in op.split("_"))
        operation = self.model.operation_model(api_name)

        def call(**params: Any) -> Any:
            if self.service in _PASCAL_APIS:
                return method(**params)
            if any(k[:1].isupper() for k in params):
                params = _convert(params, operation.input_shape, to_api=True)
            try:
                out = method(**params)
            except Exception as e:
                code = getattr(e, "code", type(e).__name__)
                if code == "AccessDeniedException" and code in self.errors:
                    # A modelled error, as boto3 raises it (its class named after the code): Step Functions
                    # names it <Service>.AccessDeniedException, which no Retry of the definition lists.
                    raise _modelled_error(code, str(e), api_name) from e
                raise _client_error(code, str(e), api_name) from e
            # Step Functions hands the state PascalCase (aws-sdk and optimized integrations alike).
            return _convert(out, operation.output_shape, to_api=False)

        return call


@contextlib.contextmanager
def twins_bound(
    twins: Mapping[str, Any],
    *,
    throttle_once: bool = False,
    guard: Callable[[str, Any], Any] | None = None,
) -> Iterator[list[str]]:
    """Within the block, the interpreter's integrations call ``twins[service]`` (see the module), each
    through ``guard(service, twin)`` when given (the state machine role's permissions:
    :class:`.permissions.Guarded`); yields the names of the ``aws-sdk:`` task states that were throttled
    (``throttle_once``), in order."""
    throttled: list[str] = []
    original_task = _AwsSdkTask._eval_service_task

    def sdk_task(self: Any, env: Any, *args: Any, **kw: Any) -> Any:
        state = env.next_state_name if hasattr(env, "next_state_name") else None
        state = state or getattr(self, "_rehearsal_state", None) or repr(self)
        if throttle_once and state not in throttled:
            throttled.append(state)
            raise ThrottlingException(self._get_boto_service_action())
        return original_task(self, env, *args, **kw)

    def error_service_name(service_name: str) -> str:
        known = {"dynamodb": "DynamoDb", "sfn": "Sfn"}
        return known.get(service_name.lower(), service_name[:1].upper() + service_name[1:])

    def client_for(region: str = "", service: str = "", state_credentials: Any = None, **_: Any) -> Any:
        if service not in twins:
            raise NoTwin(f"no twin for the {service} service in this rehearsal")
        twin = twins[service] if guard is None else guard(service, twins[service])
        return twin if service == "lambda" else SdkCasing(service, twin)

    original_worker = Execution._get_start_execution_worker
    original_equals = ErrorEqualsDecl._eval_body

    def error_equals(self: ErrorEqualsDecl, env: Any) -> None:
        error_name = env.stack[-1] if env.stack else None
        if (
            ErrorEqualsDecl._STATE_ALL_ERROR in self.error_names
            and isinstance(error_name, StatesErrorName)
            and error_name.typ in UNCATCHABLE
        ):
            env.stack.pop()
            env.stack.append(False)
            return
        original_equals(self, env)

    def worker(self: Execution) -> Any:
        return iso_start_time(original_worker(self))

    with contextlib.ExitStack() as stack:
        for module in _MODULES:
            stack.enter_context(mock.patch.object(module, "boto_client_for", client_for))
        stack.enter_context(mock.patch.object(Execution, "_get_start_execution_worker", worker))
        stack.enter_context(mock.patch.object(ErrorEqualsDecl, "_eval_body", error_equals))
        # moto ships JSONata's JVM bridge stubbed out; the infra tests' pure-Python engine stands in.
        stack.enter_context(mock.patch.object(moto_jsonata, "_eval_jsonata", eval_jsonata))
        # The rehearsal reads the whole history every 0.5 s while the run goes on: moto's serializer
        # would take the interpreter's GIL for most of a second each time on a loaded machine.
        stack.enter_context(
            mock.patch.object(StepFunctionResponse, "get_execution_history", history_response)
        )
        stack.enter_context(mock.patch.object(_AwsSdkTask, "_eval_service_task", sdk_task))
        stack.enter_context(
            mock.patch.object(_AwsSdkTask, "_normalise_service_error_name", staticmethod(error_service_name))
        )
        yield throttled


class TwinEndpoint:
    """HTTP on 127.0.0.1 for the Lambdas' boto3: ECS and SSM (``X-Amz-Target`` JSON 1.1) and FIS
    (REST-JSON ``/experiments``), answered by the same twins. Use as a context manager; ``url`` once
    entered."""

    def __init__(
        self,
        ecs: Any,
        fis: Any,
        ssm: Any = None,
        guard: Callable[[str | None, str, str, dict[str, Any]], None] | None = None,
        authorize: Callable[[str | None, str, str, dict[str, Any]], dict[str, Any] | None] | None = None,
    ) -> None:
        self.ecs, self.fis, self.ssm = ecs, fis, ssm
        # guard(access key id of the caller's signature, service, operation, params): raises to refuse.
        self.guard = guard
        # authorize(access key id, service, operation, params): None to allow, else {code, message, status}.
        self.authorize = authorize
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, ctype: str) -> None:
                data = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}") if n else {}

            def _do(self, method: str) -> None:
                target = self.headers.get("X-Amz-Target")
                ctype = "application/x-amz-json-1.1" if target else "application/json"
                key = _ACCESS_KEY.search(self.headers.get("Authorization") or "")
                caller = key.group(1) if key else None
                try:
                    if method == "POST" and self.path == sdk_guard.PATH and outer.authorize is not None:
                        ask = self._body()
                        params = ask.get("params") or {}
                        answer = outer.authorize(ask.get("caller"), ask["service"], ask["operation"], params)
                        self._reply(200, {"allowed": True} if answer is None else answer, "application/json")
                        return
                    if target:
                        service, _, action = target.partition(".")
                        op = _CAMEL.sub("_", action).lower()
                        twin = outer.ssm if service == "AmazonSSM" else outer.ecs
                        if twin is None:
                            raise NoTwin(f"no twin for {target}")
                        body = self._body()
                        if outer.guard is not None:
                            outer.guard(caller, "ssm" if service == "AmazonSSM" else "ecs", op, body)
                        out = getattr(twin, op)(**body)
                    else:
                        out = outer._fis(method, self.path, self._body(), caller)
                    self._reply(200, out, ctype)
                except Exception as e:
                    code = getattr(e, "code", type(e).__name__)
                    self.send_response(400)
                    self.send_header("x-amzn-ErrorType", code)
                    data = json.dumps({"__type": code, "message": str(e)}).encode()
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._do("GET")

            def do_POST(self) -> None:
                self._do("POST")

            def do_DELETE(self) -> None:
                self._do("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="twin-endpoint", daemon=True)

    def _fis(self, method: str, path: str, body: dict[str, Any], caller: str | None = None) -> Any:
        base, _, query = path.partition("?")
        parts = base.strip("/").split("/")
        wanted = urllib.parse.parse_qs(query).get("experimentTemplateId")
        if parts[0] == "experiments" and len(parts) == 2:
            name = {"GET": "get_experiment", "DELETE": "stop_experiment"}[method]
            if self.guard is not None:
                self.guard(caller, "fis", name, {"id": parts[1]})
            return getattr(self.fis, name)(id=parts[1])
        if parts[0] == "experiments" and parts[2:] == ["resolvedTargets"] and method == "GET":
            params = {"experimentId": parts[1]}
            params |= {k: v[0] for k, v in urllib.parse.parse_qs(query).items() if k == "targetName"}
            if self.guard is not None:
                self.guard(caller, "fis", "list_experiment_resolved_targets", params)
            return self.fis.list_experiment_resolved_targets(**params)
        if parts == ["experiments"] and method == "GET":
            if self.guard is not None:
                self.guard(caller, "fis", "list_experiments", {})
            return {
                "experiments": [
                    e.describe()
                    for e in self.fis.experiments.values()
                    if not wanted or e.template_id in wanted
                ]
            }
        raise NoTwin(f"no FIS twin for {method} {path}")

    def __enter__(self) -> TwinEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

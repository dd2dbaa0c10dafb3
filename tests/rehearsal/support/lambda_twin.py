"""The Lambda twin: ``lambda:invoke`` runs the function's handler from its bundled asset in a subprocess.

The subprocess is this machine's Python started with ``-I -S`` (no site-packages, no user site, no
``PYTHON*`` variables), and its ``sys.path`` is the asset folder, then a *runtime* folder holding only
what the Lambda Python runtime provides (boto3 and its dependencies), then the standard library: a
package the asset lacks fails to import here as it would on AWS. The event goes in on stdin; the result
(or Lambda's ``{errorType, errorMessage, stackTrace}`` with ``FunctionError: Unhandled``) comes back in a
file, because the handler's logs use stdout. The environment is the function's own from the template,
with deployment values substituted (:class:`LambdaTwin` ``deploy``) and every AWS endpoint on the twins.
With ``guard`` (a :func:`.sdk_guard.guard_folder`), the bootstrap installs the rehearsal's IAM check on the
function's own boto3 before the handler is imported: its S3, Secrets Manager and DynamoDB calls are judged
against the function's role (:mod:`.sdk_guard`).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.rehearsal.support.assembly import Assembly, Function, cache_root, runnable_asset

# What the python3.12 Lambda runtime puts on the path besides the function's code.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")

_BOOTSTRAP = r"""
import json, sys, time, traceback, uuid
asset, runtime, handler, result_path, name, arn, timeout_s, memory, guard = sys.argv[1:10]
sys.path[:0] = [asset, runtime]
if guard:  # the rehearsal's IAM check of the function's own AWS calls (tests/rehearsal/support/sdk_guard.py)
    sys.path.append(guard)
    import sdk_guard
    if not sdk_guard.install_from_env():
        raise SystemExit("the rehearsal's IAM check has no endpoint (" + sdk_guard.ENV_URL + ")")
deadline = time.time() + float(timeout_s)

class Context:
    function_name = name
    function_version = "$LATEST"
    invoked_function_arn = arn
    memory_limit_in_mb = int(memory)
    aws_request_id = str(uuid.uuid4())
    log_group_name = "/aws/lambda/" + name
    log_stream_name = "rehearsal"
    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - time.time()) * 1000))

try:
    module, _, attr = handler.rpartition(".")
    fn = getattr(__import__(module, fromlist=[attr]), attr)
    out, error = fn(json.load(sys.stdin), Context()), None
except Exception as e:
    out, error = {"errorType": type(e).__name__, "errorMessage": str(e),
                  "stackTrace": traceback.format_exception(e)}, "Unhandled"
with open(result_path, "w") as f:
    json.dump({"payload": out, "error": error}, f, default=str)
"""


def runtime_folder() -> Path:
    """A folder with symlinks to this environment's copies of the runtime's packages (boto3 & co)."""
    out = cache_root() / f"lambda-runtime-py{sys.version_info.major}{sys.version_info.minor}"
    import boto3

    site = Path(boto3.__file__).resolve().parent.parent
    # A cache shared by several checkouts may hold links into a virtualenv that is gone (every Lambda then
    # fails "No module named 'boto3'"): links that do not point into this environment are made again.
    if not (out / ".complete").exists() or any(
        (out / name).resolve() != (site / name).resolve() for name in RUNTIME_PACKAGES
    ):
        out.mkdir(parents=True, exist_ok=True)
        for name in RUNTIME_PACKAGES:
            link = out / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(site / name)
        (out / ".complete").write_text("")
    return out


class LambdaTwin:
    """``invoke(FunctionName=..., Payload=...)`` as boto3's Lambda client answers it, for the functions of
    ``assembly``. ``deploy`` maps a template environment value (a placeholder) to the value a deployment
    would have given; ``endpoint_env`` is added to every function's environment (twin endpoints, fake
    credentials). ``access_key(function id)``, when given, is the access key id the function signs with
    (it names the function's role to the twins: :meth:`.permissions.Permissions.access_key`); ``guard``
    the folder of the IAM check the bootstrap installs (see the module).
    ``invocations`` records ``(function name, seconds, FunctionError or None)``."""

    def __init__(
        self,
        assembly: Assembly,
        *,
        deploy: Mapping[str, str],
        endpoint_env: Mapping[str, str],
        access_key: Callable[[str], str] | None = None,
        guard: Path | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.assembly = assembly
        self.access_key = access_key
        self.guard = guard
        self.deploy = dict(deploy)
        self.endpoint_env = dict(endpoint_env)
        self.log = log
        self.runtime = runtime_folder()
        self.invocations: list[tuple[str, float, str | None]] = []
        self._folders: dict[str, Path] = {}
        self._bootstrap = cache_root() / "lambda_bootstrap.py"
        self._bootstrap.write_text(_BOOTSTRAP)

    def prepare(self) -> None:
        """Find (or bundle for this Python) every function's runnable asset before the run starts."""
        for fn in self.assembly.functions.values():
            self._folder(fn)

    def _folder(self, fn: Function) -> Path:
        if fn.logical_id not in self._folders:
            self._folders[fn.logical_id] = runnable_asset(fn, log=self.log)
        return self._folders[fn.logical_id]

    def environment(self, fn: Function) -> dict[str, str]:
        """The subprocess's environment: the function's, deployment values substituted, on the twins."""
        env = {k: self.deploy.get(v, v) for k, v in fn.environment.items()}
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "LAMBDA_TASK_ROOT": str(self._folder(fn)),
            # X-Ray has no twin here: the tracer would look for a Lambda trace header and a daemon.
            "POWERTOOLS_TRACE_DISABLED": "true",
            **self.endpoint_env,
            **({"AWS_ACCESS_KEY_ID": self.access_key(fn.logical_id)} if self.access_key else {}),
            **env,
        }

    def invoke(self, FunctionName: str, Payload: Any = None, **_: Any) -> dict[str, Any]:
        lid = FunctionName.rsplit(":", 1)[-1]
        fn = self.assembly.functions.get(lid)
        if fn is None:
            raise KeyError(f"no function {lid} in the template")
        event = Payload if isinstance(Payload, (bytes, str)) else json.dumps(Payload or {})
        with tempfile.TemporaryDirectory(prefix="resgate-lambda-") as tmp:
            result = Path(tmp) / "result.json"
            arn = f"arn:aws:lambda:us-east-1:123456789012:function:{lid}"
            cmd = [
                sys.executable,
                "-I",
                "-S",
                str(self._bootstrap),
                *(str(self._folder(fn)), str(self.runtime), fn.handler, str(result), lid, arn),
                *(str(fn.timeout_s), str(fn.memory_mb), str(self.guard or "")),
            ]
            t0 = time.monotonic()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.environment(fn),
                cwd=tmp,
                start_new_session=True,
            )
            try:
                logs, _ = proc.communicate(event.encode() if isinstance(event, str) else event, fn.timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                logs, _ = proc.communicate()
                return self._done(fn, t0, "Unhandled", _error("Sandbox.Timedout", "Task timed out"), logs)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            if not result.exists():  # the interpreter itself died (Lambda: Runtime.ExitError)
                msg = f"exit code {proc.returncode}: {logs.decode(errors='replace')[-2000:]}"
                return self._done(fn, t0, "Unhandled", _error("Runtime.ExitError", msg), logs)
            out = json.loads(result.read_text())
        return self._done(fn, t0, out["error"], out["payload"], logs)

    def _done(self, fn: Function, t0: float, error: str | None, payload: Any, logs: bytes) -> dict[str, Any]:
        took = time.monotonic() - t0
        self.invocations.append((fn.name, took, error))
        what = f"{payload.get('errorType')}: {payload.get('errorMessage')}" if error else "ok"
        self.log(f"lambda {fn.name}: {what} ({took:.1f} s)")
        if error:
            self.log(logs.decode(errors="replace")[-3000:])
        resp: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": io.BytesIO(json.dumps(payload, default=str).encode()),
        }
        if error:
            resp["FunctionError"] = error
        return resp


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"errorType": kind, "errorMessage": message, "requestId": str(uuid.uuid4())}

"""The rehearsal's IAM check inside a Lambda or task process: every call its boto3 makes to a guarded service
(S3, Secrets Manager, DynamoDB, KMS) is first put to the rehearsal, which evaluates it against the caller's
role in the synthesized template (:meth:`.permissions.Permissions.authorize`), and a call the role does not
allow fails here with the ``ClientError`` boto3 would raise on AWS, before it reaches moto's server.

Those calls go straight to moto's server, which carries no caller to a hook; so the check sits on the
client side: :func:`install` appends a ``before-parameter-build`` handler to botocore's built-in handlers,
which every botocore session (hence every boto3 client, the default session's included) registers when it
is created. The handler sends ``{caller, service, operation, params}`` (the caller is the access key id
the process signs with, which names its role: :meth:`.permissions.Permissions.access_key`) to the
rehearsal's endpoint and raises what it answers. An endpoint that cannot be reached refuses the call: a
call the rehearsal did not judge must not pass.

This module runs in the Lambda's isolated interpreter (standard library and botocore only) and, through a
``sitecustomize``, in the load task's: :func:`install_from_env` reads :data:`ENV_URL` and
:data:`ENV_SERVICES`. At that point nothing that imports ``ssl`` may be imported yet (botocore, urllib):
Locust's gevent patches ``ssl`` later, and a process that imported it first fails with a RecursionError
on its first TLS context. So the handler is installed when the process itself first imports
``botocore.handlers`` (:class:`_AfterImport`), and urllib is imported only when a call is judged.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ENV_URL = "RESGATE_REHEARSAL_AUTHORIZER"  # the endpoint's base URL; the check is off without it
ENV_SERVICES = "RESGATE_REHEARSAL_GUARDED"  # comma-separated botocore service names
PATH = "/rehearsal/authorize"
GUARDED = ("s3", "secretsmanager", "dynamodb", "kms")
TIMEOUT_S = 30.0


_DROP = object()


def _plain(value: Any) -> Any:
    """The JSON part of a call's parameters: bodies and file objects are left out (never needed to
    authorize a call)."""
    if isinstance(value, dict):
        pairs = ((str(k), _plain(v)) for k, v in value.items())
        return {k: v for k, v in pairs if v is not _DROP}
    if isinstance(value, (list, tuple)):
        return [x for x in map(_plain, value) if x is not _DROP]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return _DROP


def ask(url: str, caller: str, service: str, operation: str, params: Any) -> dict[str, Any] | None:
    """The rehearsal's answer: None when the call is allowed, else ``{code, message, status}``."""
    import urllib.error
    import urllib.request

    body = json.dumps(
        {"caller": caller, "service": service, "operation": operation, "params": _plain(params)}
    ).encode()
    req = urllib.request.Request(
        url.rstrip("/") + PATH, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            answer = json.loads(resp.read() or b"{}")
    except (OSError, urllib.error.URLError, ValueError) as e:
        return {
            "code": "AccessDenied",
            "message": f"the rehearsal could not judge {service}:{operation} ({e})",
            "status": 403,
        }
    return None if answer.get("allowed") else answer


def handler(url: str, services: frozenset[str]) -> Any:
    """The ``before-parameter-build`` handler (see the module)."""
    from botocore import xform_name
    from botocore.errorfactory import ClientExceptionsFactory

    factory = ClientExceptionsFactory()

    def authorize(params: Any, model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        if service not in services:
            return
        caller = os.environ.get("AWS_ACCESS_KEY_ID", "")
        denied = ask(url, caller, service, xform_name(model.name), params)
        if denied is None:
            return
        code, status = str(denied["code"]), int(denied.get("status") or 400)
        error = {"Code": code, "Message": str(denied["message"])}
        response = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "rehearsal"}}
        # As botocore raises it: the service's modelled exception class when it has one for the code.
        cls = factory.create_client_exceptions(model.service_model).from_code(code)
        raise cls(response, model.name)

    return authorize


def install(url: str, services: frozenset[str] = frozenset(GUARDED)) -> tuple[str, Any]:
    """Every botocore session created from now on checks its calls to ``services`` with the rehearsal;
    returns the handler's entry in botocore's built-in handlers."""
    from botocore import handlers

    spec = ("before-parameter-build", handler(url, services))
    handlers.BUILTIN_HANDLERS.append(spec)
    return spec


@contextlib.contextmanager
def installed(url: str, services: frozenset[str] = frozenset(GUARDED)) -> Iterator[None]:
    """:func:`install` for the sessions created within the block (a test's own process)."""
    from botocore import handlers

    spec = install(url, services)
    try:
        yield
    finally:
        handlers.BUILTIN_HANDLERS.remove(spec)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``then()`` once the module ``name`` has been imported by the process (not before)."""

    def __init__(self, name: str, then: Callable[[], Any]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenLoader(spec.loader, self.then)
        return spec


class _ThenLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, then: Callable[[], Any]) -> None:
        self.loader, self.then = loader, then

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        self.then()


def install_from_env() -> bool:
    """:func:`install` from :data:`ENV_URL` and :data:`ENV_SERVICES`, now if botocore's handlers are
    already imported, else right after the process imports them; False (nothing installed) without the
    URL."""
    url = os.environ.get(ENV_URL)
    if not url:
        return False
    names = os.environ.get(ENV_SERVICES)
    services = frozenset(names.split(",")) if names else frozenset(GUARDED)
    if "botocore.handlers" in sys.modules:
        install(url, services)
    else:
        sys.meta_path.insert(0, _AfterImport("botocore.handlers", lambda: install(url, services)))
    return True


_SITECUSTOMIZE = """\"\"\"The rehearsal's IAM check: see sdk_guard.\"\"\"
import sdk_guard

sdk_guard.install_from_env()
"""


def guard_folder(root: Path) -> Path:
    """A folder holding this module and a ``sitecustomize`` that installs it: put on a process's
    ``PYTHONPATH`` (the load task) or its ``sys.path`` (the Lambda bootstrap, which imports it)."""
    out = root / "rehearsal-sdk-guard"
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "sdk_guard.py": Path(__file__).read_text(),
        "sitecustomize.py": _SITECUSTOMIZE,
    }
    for name, text in files.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            tmp.replace(path)
    return out

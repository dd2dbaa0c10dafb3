"""A small IAM policy evaluator for the rehearsal: does a role's identity policy allow one request?

moto's own IAM enforcement checks actions only (its access-control module says Resource and Condition are
not supported), and no maintained evaluator of Action, Resource and Condition was found on PyPI (the
candidates analyse or generate policies; none evaluates a request context), so this one covers what the
gate's stack uses, as the IAM policy evaluation logic describes it (IAM user guide, "Policy evaluation
logic" and "IAM JSON policy elements: Condition operators"):

- an explicit ``Deny`` wins; else some ``Allow`` must match; else the request is implicitly denied;
- a statement matches when its ``Action`` (or not its ``NotAction``) matches the action, case-insensitive,
  with ``*`` and ``?`` wildcards; its ``Resource`` (or not its ``NotResource``) matches the resource ARN
  (``*`` and ``?`` within and across ARN segments, as IAM does); and every condition holds;
- conditions: ``StringEquals``, ``StringNotEquals``, ``StringLike``, ``StringNotLike``, ``ArnEquals``,
  ``ArnLike``, ``ArnNotEquals``, ``ArnNotLike``, ``Bool``, the ``ForAllValues:`` and ``ForAnyValue:``
  set operators, and ``...IfExists``. Keys are case-insensitive, values of a key are OR-ed, keys and
  operators of a block are AND-ed; a missing key fails every operator but the negated ones and
  ``IfExists`` (and ``ForAllValues``, which holds for an empty set).

:func:`evaluate` returns a :class:`Decision`; :class:`AccessDenied` is the error a twin raises, worded as
AWS words it (``User: <role> is not authorized to perform: <action> on resource: <resource>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Context = Mapping[str, str | Sequence[str]]


@dataclass(frozen=True)
class Decision:
    """``allowed``; ``reason`` is ``"allowed"``, ``"explicit deny"`` or ``"implicit deny"``; ``statement``
    the index of the deciding statement (None for an implicit deny)."""

    allowed: bool
    reason: str
    statement: int | None = None


class AccessDenied(Exception):
    """The error a twin raises for a request its caller's role does not allow (code ``AccessDenied...``).
    ``reason`` is a :class:`Decision`'s, or ``"explicit deny in a resource-based policy"`` (a bucket
    policy's Deny)."""

    code = "AccessDeniedException"

    def __init__(self, role: str, action: str, resource: str, reason: str) -> None:
        self.role, self.action, self.resource, self.reason = role, action, resource, reason
        where = {
            "implicit deny": f"because no identity-based policy allows the {action} action",
            RESOURCE_DENY: "with an explicit deny in a resource-based policy",
        }.get(reason, "with an explicit deny in an identity-based policy")
        super().__init__(
            f"User: {role} is not authorized to perform: {action} on resource: {resource} {where}"
        )


RESOURCE_DENY = "explicit deny in a resource-based policy"


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    """IAM wildcards: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one character."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def action_matches(patterns: Iterable[str], action: str) -> bool:
    """``action`` (``service:Operation``) matches one of ``patterns``, case-insensitive."""
    return any(_glob(p, action, case=False) for p in patterns)


def resource_matches(patterns: Iterable[str], resource: str) -> bool:
    """``resource`` (an ARN, or ``*``) matches one of ``patterns``; ARNs compare case-sensitively."""
    return any(_glob(p, resource, case=True) for p in patterns)


_BASE_OPS = {
    "StringEquals": lambda want, got: got == want,
    "StringNotEquals": lambda want, got: got != want,
    "StringEqualsIgnoreCase": lambda want, got: got.lower() == want.lower(),
    "StringLike": lambda want, got: _glob(want, got, case=True),
    "StringNotLike": lambda want, got: not _glob(want, got, case=True),
    "ArnEquals": lambda want, got: _glob(want, got, case=True),
    "ArnLike": lambda want, got: _glob(want, got, case=True),
    "ArnNotEquals": lambda want, got: not _glob(want, got, case=True),
    "ArnNotLike": lambda want, got: not _glob(want, got, case=True),
    "Bool": lambda want, got: got.lower() == str(want).lower(),
}
_NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _lookup(context: Context, key: str) -> list[str] | None:
    for k, v in context.items():
        if k.lower() == key.lower():
            return [str(x) for x in _as_list(v)]
    return None


def condition_holds(operator: str, block: Mapping[str, Any], context: Context) -> bool:
    """One condition operator's block over ``context``. Raises ValueError for an operator this evaluator
    does not know (a policy it cannot judge must not be judged allowed)."""
    set_op, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    base = op.removesuffix("IfExists")
    if base not in _BASE_OPS:
        raise ValueError(f"condition operator {operator} is not supported by the rehearsal's evaluator")
    test = _BASE_OPS[base]
    negated = base in _NEGATED
    for key, wanted in block.items():
        wants = [str(w) for w in _as_list(wanted)]
        got = _lookup(context, key)
        if got is None:
            if if_exists or set_op == "ForAllValues" or negated:
                continue
            return False
        if set_op == "ForAllValues":
            ok = all(any(test(w, g) for w in wants) for g in got)
        elif set_op == "ForAnyValue":
            ok = any(any(test(w, g) for w in wants) for g in got)
        elif negated:
            ok = all(test(w, g) for w in wants for g in got)
        else:
            ok = any(test(w, g) for w in wants for g in got)
        if not ok:
            return False
    return True


def statement_matches(st: Mapping[str, Any], action: str, resource: str, context: Context) -> bool:
    """``st`` applies to the request (Action/NotAction, Resource/NotResource, every Condition)."""
    if "Action" in st and not action_matches(_as_list(st["Action"]), action):
        return False
    if "NotAction" in st and action_matches(_as_list(st["NotAction"]), action):
        return False
    if "Resource" in st and not resource_matches(_as_list(st["Resource"]), resource):
        return False
    if "NotResource" in st and resource_matches(_as_list(st["NotResource"]), resource):
        return False
    return all(condition_holds(op, block, context) for op, block in (st.get("Condition") or {}).items())


def evaluate(
    statements: Sequence[Mapping[str, Any]], action: str, resource: str, context: Context | None = None
) -> Decision:
    """The decision of a role whose policies hold ``statements`` on one request."""
    ctx = context or {}
    allow: int | None = None
    for i, st in enumerate(statements):
        if not statement_matches(st, action, resource, ctx):
            continue
        if st.get("Effect") == "Deny":
            return Decision(False, "explicit deny", i)
        if allow is None:
            allow = i
    if allow is not None:
        return Decision(True, "allowed", allow)
    return Decision(False, "implicit deny")


def require(
    role: str,
    statements: Sequence[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Context | None = None,
) -> None:
    """Raise :class:`AccessDenied` naming ``role``, ``action`` and ``resource`` unless allowed."""
    decision = evaluate(statements, action, resource, context)
    if not decision.allowed:
        raise AccessDenied(role, action, resource, decision.reason)

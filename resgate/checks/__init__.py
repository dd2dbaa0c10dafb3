"""The gate's checkers, each a module with one shape (as Jepsen's checkers).

Every checker module (``slo``, ``recovery``, ``retryable``, ``integrity``, ``replay``) exposes ``NAME`` (the
check's name), ``Thresholds`` (the parser of its ``checks.<NAME>`` section: ``Thresholds.from_dict(body,
where=...)``), the pure judge ``check(evidence, thresholds) -> CheckResult`` and, where the evidence lives
in the target's database and topics (integrity, replay), ``gather(...) -> evidence``. Validity is decided
by :func:`resgate.checks.result.judge` and capped examples are shared out by
:func:`resgate.checks.result.interleave`.
"""

from resgate.checks.result import UNKNOWN, CheckResult, Validity, merge_validity

__all__ = ["UNKNOWN", "CheckResult", "Validity", "merge_validity"]

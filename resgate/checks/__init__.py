"""The gate's checkers: pure functions ``check(evidence, thresholds) -> CheckResult``."""

from resgate.checks.result import UNKNOWN, CheckResult, Validity, merge_validity

__all__ = ["UNKNOWN", "CheckResult", "Validity", "merge_validity"]

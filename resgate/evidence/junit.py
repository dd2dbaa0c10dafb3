"""JUnit XML for a gate run: one test case per check, so CI systems show checks as tests."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

from resgate.checks.result import UNKNOWN, CheckResult


def junit_xml(
    gate: str,
    run_id: str,
    results: list[CheckResult],
    *,
    unknown_is_failure: bool = True,
    duration_s: float = 0.0,
) -> str:
    """Return a JUnit XML document: ``<testsuite name=gate>`` with a ``<testcase>`` per check."""
    failures = sum(1 for r in results if r.valid is False or (r.valid == UNKNOWN and unknown_is_failure))
    suite = ET.Element(
        "testsuite",
        name=f"resgate.{gate}",
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped=str(sum(1 for r in results if r.valid == UNKNOWN and not unknown_is_failure)),
        time=f"{duration_s:.3f}",
        id=run_id,
    )
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"resgate.{gate}", name=r.name)
        summary = json.dumps({"counts": r.counts, "examples": r.examples[:5]}, default=str)
        if r.valid is False:
            ET.SubElement(case, "failure", message=f"{r.name} failed", type="CheckFailed").text = summary
        elif r.valid == UNKNOWN:
            msg = f"{r.name} could not decide: {r.error or 'no data'}"
            tag = "failure" if unknown_is_failure else "skipped"
            ET.SubElement(case, tag, message=msg, type="CheckUnknown").text = summary
        ET.SubElement(case, "system-out").text = summary
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"

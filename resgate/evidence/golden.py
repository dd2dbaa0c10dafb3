"""The gate's golden profile in the evidence store: ``<root>/gate=<name>/golden/profile.json``
(:func:`resgate.contract.layout.golden_key`), next to the runs of a local evidence root or under the same S3
prefix, read and written for the run store at hand (a :class:`~resgate.evidence.store.FolderStore` or an
:class:`~resgate.evidence.s3.S3Store`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from resgate.checks.slo.golden import GoldenProfile
from resgate.checks.slo.phases import PhaseFigures
from resgate.contract.errors import ConfigError, EvidenceMissing
from resgate.contract.layout import golden_key
from resgate.evidence.store import FolderStore, RunStore, read_jsonl


def golden_path(root: str | Path, gate: str) -> Path:
    """Where a local evidence root keeps the gate's golden profile."""
    return Path(root) / golden_key(gate)


def _s3_key(store: Any) -> str:
    return "/".join(p for p in (store.prefix, golden_key(store.key.gate)) if p)


def golden_uri(store: RunStore) -> str:
    """Where the store's gate keeps its golden profile: a path, or an ``s3://`` URI."""
    if isinstance(store, FolderStore):
        return str(golden_path(store.root, store.key.gate))
    return f"s3://{store.bucket}/{_s3_key(store)}"  # type: ignore[attr-defined]


def read_golden(store: RunStore) -> GoldenProfile | None:
    """The golden profile of the store's gate, or None when none was set. A malformed profile raises
    ConfigError naming the file (the gate fails closed rather than compare with garbage)."""
    if isinstance(store, FolderStore):
        path = golden_path(store.root, store.key.gate)
        if not path.is_file():
            return None
        text, where = path.read_text(encoding="utf-8"), str(path)
    elif hasattr(store, "s3") and hasattr(store, "bucket"):
        where = f"s3://{store.bucket}/{_s3_key(store)}"
        try:
            body = store.s3.get_object(Bucket=store.bucket, Key=_s3_key(store))["Body"]
        except Exception as e:
            code = getattr(e, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        text = body.read().decode("utf-8")
    else:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not JSON: {e.msg}", where=where) from e
    return GoldenProfile.from_dict(data, where=where)


def write_golden(store: RunStore, profile: GoldenProfile) -> str:
    """Record ``profile`` as the store's gate's golden profile (replacing any); return where it went."""
    text = json.dumps(profile.to_dict(), indent=1) + "\n"
    if isinstance(store, FolderStore):
        path = golden_path(store.root, store.key.gate)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return str(path)
    store.s3.put_object(  # type: ignore[attr-defined]
        Bucket=store.bucket,  # type: ignore[attr-defined]
        Key=_s3_key(store),
        Body=text.encode("utf-8"),
        ContentType="application/json",
    )
    return golden_uri(store)


def profile_of_run(store: RunStore, *, now: float | None = None) -> GoldenProfile:
    """A golden profile from a finished, passing run: its ``phases`` table. Raises ConfigError when the
    run did not pass or has no phases (a failing run is no reference)."""
    try:
        verdict = json.loads(store.read_text("verdicts"))
    except EvidenceMissing as e:
        raise ConfigError(f"the run has no verdict (not finished): {e}", where="run") from e
    if verdict.get("passed") is not True:
        raise ConfigError(
            f"only a passing run can be the golden profile; {store.key.run_id} is {verdict.get('result')}",
            where="run",
        )
    if not store.exists("phases"):
        raise ConfigError(f"the run has no phases table ({store.uri('phases')})", where="run")
    rows = read_jsonl(store, "phases")
    if not rows:
        raise ConfigError("the run's phases table is empty (no ledger?)", where="run")
    return GoldenProfile(
        gate=store.key.gate,
        run_id=store.key.run_id,
        recorded_at=time.time() if now is None else now,
        phases=tuple(PhaseFigures.from_row(r) for r in rows),
    )


def profile_text(profile: GoldenProfile, where: str, *, as_json: bool = False) -> str:
    """How ``resgate baseline show`` and ``resgate aws baseline-show`` print a profile: its gate, run and
    place, then its phases as the report's table (or the profile's JSON)."""
    if as_json:
        return json.dumps(profile.to_dict(), indent=1)
    from resgate.evidence.report import phases_table

    head = f"golden profile of gate {profile.gate}: run {profile.run_id} ({where})"
    return "\n".join([head, *phases_table([p.to_row() for p in profile.phases])])

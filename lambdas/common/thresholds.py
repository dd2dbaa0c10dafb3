"""Where a check's thresholds come from: the event's own section, else the run's gate config in S3.

The section is the check's ``checks.<name>`` body of the gate config, handed (``enabled`` dropped) to the
checker's own ``from_dict`` by the handler, exactly as the local runner does, so the same rules apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from lambdas.common import settings
from lambdas.common.event import RunEvent
from resgate.contract.errors import ConfigError, EvidenceMissing
from resgate.evidence.store import RunStore


def check_section(
    event: RunEvent,
    store: RunStore,
    name: str,
    *,
    keys: Sequence[str] = (settings.EVENT_THRESHOLDS,),
) -> tuple[dict[str, Any], str]:
    """The check's config section and the ``where`` to name in errors: ``(body, "event.thresholds")``.

    The first of ``keys`` present in the event wins (at most one may be given); without any, the section
    ``checks.<name>`` of the run's ``config.yaml`` is used (a check absent from it gets ``{}``, as in a
    local run). Raises :class:`ConfigError` when neither the event nor the run has a config.
    """
    given = [k for k in keys if event.get(k) is not None]
    if len(given) > 1:
        raise ConfigError(f"give only one of {given}", where=f"event.{given[1]}")
    if given:
        body = event.mapping(given[0])
        assert body is not None
        return dict(body), f"event.{given[0]}"
    try:
        text = store.read_text("config")
    except EvidenceMissing as e:
        raise ConfigError(
            f"the event has no {' or '.join(repr(k) for k in keys)} and the run has no gate config "
            f"({store.uri('config')})",
            where=f"event.{keys[0]}",
        ) from e
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"is not valid YAML: {e}", where=store.uri("config")) from e
    checks = raw.get("checks") if isinstance(raw, Mapping) else None
    section = (checks or {}).get(name) if isinstance(checks or {}, Mapping) else None
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError("must be an object", where=f"{store.uri('config')}: checks.{name}")
    return dict(section or {}), f"checks.{name}"

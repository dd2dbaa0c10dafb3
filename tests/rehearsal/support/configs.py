"""The gate config a rehearsal and ``resgate run`` share: the default config (``resgate/configs/
paperbroker.yaml``), shortened, without what the AWS stack cannot do yet.

- the load runs :data:`LOAD_S` seconds (baseline 3 s) and the ``stop_task`` faults keep their order at
  times scaled to it;
- ``redeliver-events`` (``duplicate_delivery``) is dropped: it has no AWS implementation (the stack
  warns at synth and the state machine has no state for it), so the two conductors would not run the
  same faults;
- every check is enabled, ``replay`` included: locally its rebuild is the config's callable, in the
  rehearsal the replay Lambda runs the config's ``ecs_task`` (``paperbroker-projector``, the target's own
  task definition, which the ECS twin runs as ``python -m paperbroker.projections rebuild``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.rehearsal.support.assembly import ROOT, cache_root

LOAD_S = 20
FAULT_AT_S = {"kill-gateway": 5, "kill-projector": 10, "kill-matcher": 13}


def rehearsal_config() -> Path:
    """Write the shared config (see the module) into the rehearsal cache; return its path. The text is
    the same on every call, so the synthesized assembly is reused."""
    data = yaml.safe_load((ROOT / "resgate" / "configs" / "paperbroker.yaml").read_text())
    data["load"].update(duration_s=LOAD_S, baseline_s=3)
    data["faults"] = [dict(f, at_s=FAULT_AT_S[f["name"]]) for f in data["faults"] if f["name"] in FAULT_AT_S]
    data["quiesce"]["timeout_s"] = 30
    data["evidence"]["root"] = str(cache_root() / "evidence")
    path = cache_root() / "rehearsal-paperbroker.yaml"
    text = "# The rehearsal's gate config: see tests/rehearsal/support/configs.py\n" + yaml.safe_dump(
        data, sort_keys=False
    )
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path

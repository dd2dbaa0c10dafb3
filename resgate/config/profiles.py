"""Named load/fault profiles of a gate config (``profiles:``), each validated as a whole config would be.

A profile overrides the size of the load and chooses which of the config's faults run, and when::

    profiles:
      pipeline: {}                         # the config's own load and faults
      nightly:
        load: {users: 60, spawn_rate: 30, duration_s: 90, workers: 2}   # only these four may change
        faults:                            # omit: every fault of the config, as configured
          - kill-gateway                   # a fault of the config, as configured
          - {name: kill-matcher, at_s: 70} # ... or moved (at_s is the only field a profile may change)

Every profile is checked before anything starts: its load is the config's ``load`` with the overrides,
validated by the same parser (``baseline_s`` shorter than the duration, …), and each of its faults is the
config's fault with its ``at_s`` replaced, validated by the same parser against *the profile's* load (so a
fault cannot fall outside the profile's load). Errors name ``profiles.<name>.<field>`` and the file line.
A profile's faults keep the config's ``at_s`` order: the AWS state machine is synthesised with one start
order (:mod:`infra.state_machine.faults`), so a profile that swapped two faults would run them out of
order there. Only ``at_s`` may change because the other fields are baked into each fault's FIS
experiment template. No profile given means the config's own load and faults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

from resgate.contract.errors import ConfigError
from resgate.sections.fields import Section
from resgate.sections.yamlpos import Located

LOAD_OVERRIDES = ("users", "spawn_rate", "duration_s", "workers")
FAULT_OVERRIDES = ("name", "at_s")


def parse_profiles(
    root: Section,
    loc: Located,
    *,
    base_load: dict[str, Any],
    base_faults: Sequence[tuple[str, dict[str, Any]]],
    parse_load: Callable[[Section], Any],
    parse_fault: Callable[[Section, int, Any], Any],
    name_re: Any,
    attempt: Callable[..., Any],
) -> dict[str, Any]:
    """``{name: (load, [faults])}`` for every profile of ``profiles:`` (empty without one).

    ``base_load`` is the config's raw ``load`` mapping, ``base_faults`` its raw faults as ``(name, raw)``
    in file order; ``parse_load(section)`` and ``parse_fault(section, index, load)`` are the config's own
    parsers; ``attempt`` records a ConfigError and returns None (the caller's error collector).
    """
    sec = root.section("profiles")
    out: dict[str, Any] = {}
    for name in sec.data:
        where = sec.p(str(name))
        if not isinstance(name, str) or not name_re.match(name):
            attempt(
                _raise, ConfigError(f"a profile name must match {name_re.pattern}", where=loc.where(where))
            )
            continue
        parsed = attempt(
            lambda n=name, w=where: _parse_profile(
                Section(sec.raw(n, {}), w, loc), base_load, base_faults, parse_load, parse_fault
            )
        )
        if parsed is not None:
            out[name] = parsed
    return out


def _raise(e: ConfigError) -> None:
    raise e


def _parse_profile(
    sec: Section,
    base_load: dict[str, Any],
    base_faults: Sequence[tuple[str, dict[str, Any]]],
    parse_load: Callable[[Section], Any],
    parse_fault: Callable[[Section, int, Any], Any],
) -> tuple[Any, list[Any]]:
    overrides = sec.section("load")
    for key in LOAD_OVERRIDES:
        overrides.raw(key, None)
    overrides.done()
    given = {k: v for k, v in overrides.data.items() if v is not None}
    load = parse_load(Section({**base_load, **given}, sec.p("load"), sec.loc))
    index = {n: i for i, (n, _) in enumerate(base_faults)}
    chosen: list[tuple[int, str, dict[str, Any]]] = []  # (config index, path, merged raw)
    if sec.has("faults"):
        for i, entry in enumerate(sec.list("faults")):
            path = f"{sec.p('faults')}[{i}]"
            item = Section({"name": entry} if isinstance(entry, str) else entry, path, sec.loc)
            fname = item.str("name")
            if fname not in index:
                raise item.error("name", f"no fault named {fname!r}; faults: {[n for n, _ in base_faults]}")
            if any(fname == base_faults[j][0] for j, _, _ in chosen):
                raise item.error("name", f"fault {fname!r} is chosen twice")
            at_s = item.raw("at_s", None)
            item.done()
            raw = dict(base_faults[index[fname]][1])
            if at_s is not None:
                raw["at_s"] = at_s
            chosen.append((index[fname], path, raw))
    else:
        sec.raw("faults", None)
        chosen = [(i, f"{sec.p('faults')}[{i}]", dict(raw)) for i, (_, raw) in enumerate(base_faults)]
    sec.done()
    faults = [parse_fault(Section(raw, path, sec.loc), i, load) for i, path, raw in chosen]

    # The config's start order: by at_s, ties in file order (infra.fault_experiments sorts the same way).
    def config_order(cf: tuple[tuple[int, str, dict[str, Any]], Any]) -> tuple[float, int]:
        i = cf[0][0]
        return float(base_faults[i][1].get("at_s", 0)), i

    ordered = sorted(zip(chosen, faults, strict=True), key=config_order)
    for (_, pf), ((_, path, _), cf) in pairwise(ordered):
        if cf.at_s < pf.at_s:
            raise ConfigError(
                f"{cf.name} must not fire before {pf.name} ({cf.at_s:g} s < {pf.at_s:g} s): a profile keeps "
                "the config's fault order",
                where=sec.where(f"{path}.at_s"),
            )
    return load, sorted(faults, key=lambda f: index[f.name])

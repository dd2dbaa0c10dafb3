"""The phases of the gate state machine, one module each, composed by :mod:`infra.gate_state_machine`.

In the order of ``resgate run`` (:mod:`resgate.runner.gate`): :mod:`.preflight` (input, evidence location,
target, config copy) → :mod:`.load` (start the Locust task, baseline) → :mod:`.faults` (the FIS
experiments under the guardrails) → :mod:`.load` again (the end of the load, quiesce) →
:mod:`.assertions` (timeline, the checks) → :mod:`.verdict`; :mod:`.cleanup` is the branch every error
enters. Each builder takes what it needs as keyword arguments and returns a :class:`.steps.Phase`.
"""

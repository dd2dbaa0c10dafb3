"""Typed readers of config sections, below both the gate config and the checkers.

:mod:`.fields` (``Section``: strict getters that name the field on error; ``Errors``), :mod:`.yamlpos` (YAML
with file lines) and :mod:`.kafka` (how clients reach the brokers). ``resgate.config`` parses the gate file
with them and hands each ``checks.<name>`` section to its checker's ``Thresholds.from_dict``, which reads it
with the same ``Section``; so ``resgate.checks`` imports these, never ``resgate.config`` (no cycle).
"""

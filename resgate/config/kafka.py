"""Moved to :mod:`resgate.sections.kafka` (below both the config and the checkers); this name stays for code
written against the old path. New code imports ``resgate.sections.kafka``."""

from resgate.sections.kafka import *  # noqa: F403

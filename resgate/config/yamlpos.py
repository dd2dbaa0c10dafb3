"""Moved to :mod:`resgate.sections.yamlpos` (below both the config and the checkers); this name stays for code
written against the old path. New code imports ``resgate.sections.yamlpos``."""

from resgate.sections.yamlpos import *  # noqa: F403

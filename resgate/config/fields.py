"""Moved to :mod:`resgate.sections.fields` (below both the config and the checkers); this name stays for code
written against the old path. New code imports ``resgate.sections.fields``."""

from resgate.sections.fields import *  # noqa: F403

"""The file the gate passes to Locust beside the user's locustfile (``-f resgate_ledger_hook.py,<theirs>``).

Locust imports every ``-f`` file as a top-level module named after the file, so this shim only imports
:mod:`loadgen.ledger_plugin` by its package name: a locustfile that imports the plugin's API
(``from loadgen.ledger_plugin import ledger_fields``) then shares the same module, listeners and ledger
writer, and no request is recorded twice.

When ``RESGATE_LOAD_SHAPE`` holds overload steps, it also puts :class:`loadgen.load_shape.OverloadShape` in
this module's namespace, where Locust finds it as the run's load shape (this file comes first in ``-f``, so
its shape is the one Locust picks).
"""

from __future__ import annotations

import os

import loadgen.ledger_plugin  # noqa: F401  (importing it installs the listeners)
from resgate.contract.env import ENV_LOAD_SHAPE

if os.environ.get(ENV_LOAD_SHAPE, "").strip():
    from loadgen.load_shape import OverloadShape  # noqa: F401  (Locust picks up the shape class here)

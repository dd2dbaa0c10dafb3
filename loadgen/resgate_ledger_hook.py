"""The file the gate passes to Locust beside the user's locustfile (``-f resgate_ledger_hook.py,<theirs>``).

Locust imports every ``-f`` file as a top-level module named after the file, so this shim only imports
:mod:`loadgen.ledger_plugin` by its package name: a locustfile that imports the plugin's API
(``from loadgen.ledger_plugin import ledger_fields``) then shares the same module, listeners and ledger
writer, and no request is recorded twice.
"""

from __future__ import annotations

import loadgen.ledger_plugin  # noqa: F401  (importing it installs the listeners)

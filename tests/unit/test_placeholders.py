"""``${port}`` is filled per replica at spawn (the other placeholders when the target starts); ``$$`` is a
literal ``$``."""

from __future__ import annotations

from resgate.config.placeholders import fill, fill_port


def test_the_port_placeholder_survives_the_targets_fill_and_is_filled_per_replica() -> None:
    arg = fill("${python}:${port}:$$x", {"python": "/py"}, keep=("port",))

    assert arg == "/py:${port}:$$x"
    assert fill_port(arg, 8123) == "/py:8123:$x"

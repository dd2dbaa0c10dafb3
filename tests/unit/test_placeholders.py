"""``${port}`` is filled per replica at spawn (the other placeholders when the target starts); ``$$`` is a
literal ``$``."""

from __future__ import annotations

from resgate.config.placeholders import fill, fill_port


def test_the_port_placeholder_survives_the_targets_fill_and_is_filled_per_replica() -> None:
    arg = fill("${python}:${port}:$$x", {"python": "/py"}, keep=("port",))

    assert arg == "/py:${port}:$$x"
    assert fill_port(arg, 8123) == "/py:8123:$x"


def test_a_replicas_own_values_are_filled_at_its_spawn_beside_its_port() -> None:
    arg = fill("${pg.dsn}|${port}|${python}", {"python": "/py", "pg.dsn": "shared"}, keep=("port", "pg.dsn"))

    assert arg == "${pg.dsn}|${port}|/py"
    assert fill_port(arg, 8123, {"pg.dsn": "host=127.0.0.1 port=6001"}) == "host=127.0.0.1 port=6001|8123|/py"
    assert fill_port("${run_id}", 1, {"pg.dsn": "x"}) == "${run_id}"  # only the replica's own names

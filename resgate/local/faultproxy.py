"""A userspace fault proxy between a service and one dependency (Postgres, a Kafka broker), on 127.0.0.1.

``FaultProxy((host, port))`` listens on a free local port and pipes every connection to the dependency
through the balancer's machinery (:class:`resgate.local.balancer.Balancer` with one fixed backend), so the
toxics (:mod:`resgate.local.toxics`) are one implementation for both the client path (clients → the
exposed service's balancer) and the dependency paths. The service is given the proxy's address instead of
the dependency's (``${pg.dsn}`` is rewritten by :func:`proxied_dsn`); the gate's own connections (setup,
integrity, replay) keep the direct address, so a fault on a service's path never blinds the checks.

With no toxic active the proxy only copies bytes (see ``benchmarks/bench_faultproxy.py`` for its cost).
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from resgate.contract.errors import ConfigError
from resgate.local.balancer import Backend, Balancer
from resgate.local.toxics import Toxics


class FaultProxy(Balancer):
    """A TCP proxy to one ``upstream`` (host, port) carrying ``toxics``; ``start()`` returns its port."""

    def __init__(
        self,
        upstream: Backend,
        *,
        toxics: Toxics | None = None,
        name: str = "faultproxy",
        connect_timeout_s: float = 3.0,
    ) -> None:
        host, port = upstream
        if not isinstance(port, int) or not 0 < port <= 65535:
            raise ConfigError(f"must be a port number 1-65535, got {port!r}", where="upstream")
        self.upstream: Backend = (host, port)
        super().__init__(
            0,
            backends=lambda: [self.upstream],
            name=name,
            toxics=toxics,
            connect_timeout_s=connect_timeout_s,
        )

    @property
    def address(self) -> Backend:
        """("127.0.0.1", port) once started."""
        assert self.port is not None, "start() the proxy first"
        return ("127.0.0.1", self.port)


def dsn_address(dsn: str) -> Backend:
    """(host, port) of a DSN, URL (``postgresql://``) or key=value form (port 5432 when absent)."""
    info = conninfo_to_dict(dsn)
    host, port = str(info.get("host") or ""), int(info.get("port") or 5432)
    if not host or host.startswith("/") or "," in host:
        raise ConfigError(f"can only proxy a single TCP host, got {host!r} in {dsn!r}", where="pg.dsn")
    return host, port


def proxied_dsn(dsn: str, address: Backend) -> str:
    """``dsn`` pointing at ``address`` instead of its own host and port (user, database, options kept)."""
    return make_conninfo(dsn, host=address[0], port=str(address[1]))

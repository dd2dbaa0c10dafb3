"""A TLS-terminating proxy in front of the embedded (PLAINTEXT-only) Kafka, for testing the clients' TLS.

One TLS listener per broker on 127.0.0.1, each forwarding to its plaintext broker. Kafka clients connect
to the brokers the Metadata responses advertise, so the proxy rewrites each Metadata response (decoded
and re-encoded with aiokafka's own protocol classes) to advertise the TLS listeners instead. The proxy
runs its own event loop in a thread; the certificate is self-signed for 127.0.0.1 (``cryptography``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import struct
import threading
from pathlib import Path
from typing import Any

from aiokafka.protocol import metadata

METADATA_KEY = 3
_RESPONSES = {
    cls.API_VERSION: cls
    for cls in vars(metadata).values()
    if isinstance(cls, type) and cls.__name__.startswith("MetadataResponse_v")
}


def self_signed(folder: Path) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` of a self-signed certificate for IP 127.0.0.1 (its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "resgate-test-broker")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def _frame(reader: asyncio.StreamReader) -> bytes:
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


class TlsKafkaProxy:
    """``with TlsKafkaProxy(bootstrap, cert, key) as p:`` — ``p.bootstrap`` is the TLS bootstrap."""

    def __init__(self, bootstrap: str, cert: Path, key: Path) -> None:
        self.upstreams = [(h, int(p)) for h, _, p in (b.rpartition(":") for b in bootstrap.split(","))]
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.ports: dict[tuple[str, int], int] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.servers: list[asyncio.AbstractServer] = []

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports.values())

    def __enter__(self) -> TlsKafkaProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _start(self) -> None:
        for up in self.upstreams:
            server = await asyncio.start_server(
                lambda r, w, up=up: self._serve(r, w, up), "127.0.0.1", 0, ssl=self.ctx
            )
            self.servers.append(server)
            self.ports[up] = server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for s in self.servers:
            s.close()

    async def _serve(self, client_r: Any, client_w: Any, up: tuple[str, int]) -> None:
        up_r, up_w = await asyncio.open_connection(*up)
        pending: dict[int, tuple[int, int]] = {}

        async def requests() -> None:
            while True:
                payload = await _frame(client_r)
                key, version, corr = struct.unpack(">hhi", payload[:8])
                pending[corr] = (key, version)
                up_w.write(struct.pack(">i", len(payload)) + payload)
                await up_w.drain()

        async def responses() -> None:
            while True:
                payload = await _frame(up_r)
                (corr,) = struct.unpack(">i", payload[:4])
                key, version = pending.pop(corr, (-1, -1))
                if key == METADATA_KEY:
                    payload = payload[:4] + self._rewrite(payload[4:], version)
                client_w.write(struct.pack(">i", len(payload)) + payload)
                await client_w.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in tasks:
                t.cancel()
            for w in (client_w, up_w):
                w.close()

    def _rewrite(self, body: bytes, version: int) -> bytes:
        resp = _RESPONSES[version].decode(body)
        brokers = []
        for b in resp.brokers:
            node_id, host, port, *rest = b
            brokers.append((node_id, "127.0.0.1", self.ports.get((host, port), port), *rest))
        resp.brokers = brokers
        return resp.encode()

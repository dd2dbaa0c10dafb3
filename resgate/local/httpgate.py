"""The edge's rate-limit spike: answer ``429 Too Many Requests`` with ``Retry-After`` for a share of requests.

The balancer is a byte proxy; to answer HTTP itself it must know where each request starts and ends.
:class:`HttpGate` parses just enough of the client → server stream of one connection for that: the request
line, the headers up to the blank line and ``Content-Length`` bytes of body. A request chosen for
rejection (probability ``RateLimit.percent``) is swallowed whole and answered with a 429 on the client's
side; every other byte is forwarded unchanged. Clients that do not pipeline (one request in flight per
connection, as Locust, requests and aiohttp do) get their answers in order. Connections already in the
middle of a request when the spike starts are judged from their next request on; a request with
``Transfer-Encoding: chunked`` is always forwarded (its end is not tracked).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

_METHOD = re.compile(rb"^[A-Z]{3,7} \S+ HTTP/1\.[01]\r?$")
_CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
_CHUNKED = re.compile(rb"^transfer-encoding:.*chunked", re.IGNORECASE | re.MULTILINE)
_MAX_HEADER = 64 * 1024


@dataclass
class RateLimit:
    """Reject ``percent`` % of requests with 429 and ``Retry-After: retry_after_s``."""

    percent: float
    retry_after_s: int = 1
    rng: random.Random = field(default_factory=random.Random)

    def reply(self) -> bytes:
        body = json.dumps(
            {
                "error": "rate_limited",
                "message": "the edge is shedding load",
                "retry_after_s": self.retry_after_s,
            }
        ).encode()
        head = (
            "HTTP/1.1 429 Too Many Requests\r\n"
            f"Retry-After: {self.retry_after_s}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n"
        )
        return head.encode() + body


class HttpGate:
    """Request boundaries of one connection's client → server bytes; ``feed`` says what to forward and
    what to answer."""

    def __init__(self) -> None:
        self._head = b""  # an incomplete request head being judged
        self._forward_body = 0  # body bytes of a forwarded request still to pass
        self._skip_body = 0  # body bytes of a rejected request still to swallow
        self._opaque = False  # lost track (chunked, oversized head): forward until the spike ends

    def idle(self) -> bool:
        """True between requests (nothing buffered, no body pending)."""
        return not (self._head or self._forward_body or self._skip_body)

    def feed(self, data: bytes, limit: RateLimit | None) -> tuple[bytes, bytes]:
        """``(bytes to forward to the server, bytes to answer the client)`` for the next chunk."""
        forward, reply = bytearray(), bytearray()
        while data:
            if self._forward_body:
                n = min(self._forward_body, len(data))
                forward += data[:n]
                self._forward_body -= n
                data = data[n:]
                continue
            if self._skip_body:
                n = min(self._skip_body, len(data))
                self._skip_body -= n
                data = data[n:]
                continue
            if limit is None or self._opaque:
                forward += self._head + data
                self._head = b""
                break
            buf = self._head + data
            first = buf.split(b"\n", 1)[0]
            if not self._head and b"\n" in buf and not _METHOD.match(first):
                forward += buf  # not at a request boundary (joined mid-request): pass it on
                break
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEADER:
                    self._opaque, self._head = True, b""
                    forward += buf
                    break
                self._head = buf
                break
            head, data = buf[: end + 4], buf[end + 4 :]
            self._head = b""
            if _CHUNKED.search(head):
                self._opaque = True
                forward += head + data
                break
            m = _CONTENT_LENGTH.search(head)
            length = int(m.group(1)) if m else 0
            if limit.rng.random() * 100 < limit.percent:
                self._skip_body = length
                reply += limit.reply()
            else:
                forward += head
                self._forward_body = length
        return bytes(forward), bytes(reply)

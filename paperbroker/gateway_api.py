"""The gateway's HTTP request models: validation of bodies, headers and path ids, and the JSON it answers.

Every invalid input becomes an :class:`ApiError` (400 for a malformed body, header or id, 422 naming the
invalid field, 413 for an oversized body) before the gateway touches the database; valid bodies come back
as canonical fields (a price as its normalised decimal string) whose :func:`body_hash` decides whether a
retry with the same ``Idempotency-Key`` is the same request. :func:`order_json` and :func:`rfq_json`
render the stored rows as the public JSON of the API. Pure apart from reading the aiohttp request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

RETRY_AFTER_S = "1"
MAX_BODY_BYTES = 64 * 1024
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")
MAX_QTY = 1_000_000_000
MAX_PRICE = Decimal("1000000000")
PRICE_QUANTUM = Decimal("0.000001")


# ------------------------------------------------------------------------------------------ errors
class ApiError(Exception):
    """An error with an HTTP status and a JSON body ``{error, message, field?}``."""

    def __init__(self, status: int, error: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.field:
            body["field"] = self.field
        headers = {"Retry-After": RETRY_AFTER_S} if self.status in (429, 503) else None
        return web.json_response(body, status=self.status, headers=headers)


def invalid(field: str, message: str) -> ApiError:
    """A 422 naming the invalid field."""
    return ApiError(422, "invalid_field", f"{field}: {message}", field=field)


def unavailable(what: str, detail: str) -> ApiError:
    """A 503 (with Retry-After) saying which dependency is unavailable."""
    return ApiError(503, f"{what}_unavailable", f"{what} unavailable: {detail}; retry with the same key")


# ------------------------------------------------------------------------------------- validation
def _require_str(body: dict[str, Any], field: str, pattern: re.Pattern[str], hint: str) -> str:
    value = body.get(field)
    if value is None:
        raise invalid(field, "is required")
    if not isinstance(value, str) or not pattern.match(value):
        raise invalid(field, f"must be {hint}")
    return value


def _qty(body: dict[str, Any], field: str = "qty") -> int:
    value = body.get(field)
    if value is None:
        raise invalid(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(field, "must be a positive integer")
    try:
        d = Decimal(str(value))
    except InvalidOperation as e:
        raise invalid(field, "must be a positive integer") from e
    if not d.is_finite() or d != d.to_integral_value() or d <= 0 or d > MAX_QTY:
        raise invalid(field, f"must be a positive integer up to {MAX_QTY}")
    return int(d)


def _price(body: dict[str, Any], field: str = "price") -> Decimal:
    value = body.get(field)
    if value is None:
        raise invalid(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(field, "must be a positive decimal number")
    try:
        d = Decimal(str(value))
    except InvalidOperation as e:
        raise invalid(field, "must be a positive decimal number") from e
    if not d.is_finite() or d <= 0 or d > MAX_PRICE:
        raise invalid(field, f"must be a positive decimal number up to {MAX_PRICE}")
    if d != d.quantize(PRICE_QUANTUM):
        raise invalid(field, "must have at most 6 decimal places")
    return d


def _side(body: dict[str, Any], *, required: bool = True) -> str | None:
    value = body.get("side")
    if value is None:
        if required:
            raise invalid("side", "is required")
        return None
    if value not in ("buy", "sell"):
        raise invalid("side", 'must be "buy" or "sell"')
    return str(value)


def price_str(d: Decimal) -> str:
    """Canonical decimal string of a price: no exponent, no trailing zeros (``"101.5"``, ``"100"``)."""
    s = format(d.normalize(), "f")
    return s


def body_hash(fields: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the validated fields (so ``10.50`` and ``"10.5"`` hash the same)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_order(body: Any) -> dict[str, Any]:
    """Validate an order body; return canonical fields ``{client_id, symbol, side, qty, price}``."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "body: must be a JSON object", field="body")
    price = _price(body)
    return {
        "client_id": _require_str(body, "client_id", CLIENT_ID_RE, "1-64 characters [A-Za-z0-9_.:-]"),
        "symbol": _require_str(body, "symbol", SYMBOL_RE, "1-16 characters, upper-case letters/digits/.-"),
        "side": _side(body),
        "qty": _qty(body),
        "price": price_str(price),
    }


def parse_rfq(body: Any) -> dict[str, Any]:
    """Validate an RFQ body; return ``{client_id, symbol, side (or None), qty}``."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "body: must be a JSON object", field="body")
    return {
        "client_id": _require_str(body, "client_id", CLIENT_ID_RE, "1-64 characters [A-Za-z0-9_.:-]"),
        "symbol": _require_str(body, "symbol", SYMBOL_RE, "1-16 characters, upper-case letters/digits/.-"),
        "side": _side(body, required=False),
        "qty": _qty(body),
    }


def idempotency_key(request: web.Request, *, required: bool = True) -> str | None:
    """The ``Idempotency-Key`` header (1-128 printable characters); 400 naming it when missing/invalid."""
    key = request.headers.get("Idempotency-Key")
    if key is None or key == "":
        if required:
            raise ApiError(
                400, "missing_header", "Idempotency-Key: header is required", field="Idempotency-Key"
            )
        return None
    if len(key) > 128 or not key.isprintable():
        raise ApiError(
            400,
            "invalid_header",
            "Idempotency-Key: must be 1-128 printable characters",
            field="Idempotency-Key",
        )
    return key


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; 400 naming ``body`` when it is missing or malformed."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"body: larger than {MAX_BODY_BYTES} bytes", field="body")
    raw = await request.read()
    if not raw:
        raise ApiError(400, "invalid_body", "body: a JSON object is required", field="body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_body", f"body: not valid JSON ({e})", field="body") from e


def parse_uuid(value: str, field: str) -> uuid.UUID:
    """A UUID path parameter; 400 naming the field when malformed."""
    try:
        return uuid.UUID(value)
    except ValueError as e:
        raise ApiError(400, "invalid_id", f"{field}: not a UUID", field=field) from e


# --------------------------------------------------------------------------------------- rendering
def _iso(ts: dt.datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def order_json(row: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of an order row."""
    price = row["price"]
    return {
        "order_id": str(row["order_id"]),
        "client_id": row["client_id"],
        "idempotency_key": row["idempotency_key"],
        "symbol": row["symbol"],
        "side": row["side"],
        "qty": int(row["qty"]),
        "price": price_str(price) if isinstance(price, Decimal) else str(price),
        "status": row["status"],
        "created_at": _iso(row.get("created_at")),
    }


def rfq_json(row: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of an RFQ row."""
    expires = row["expires_at"]
    return {
        "rfq_id": str(row["rfq_id"]),
        "client_id": row["client_id"],
        "symbol": row["symbol"],
        "side": row["side"],
        "qty": int(row["qty"]),
        "reference_price": str(row["reference_price"]),
        "bid": str(row["bid"]),
        "ask": str(row["ask"]),
        "created_at": _iso(row["created_at"]),
        "expires_at": _iso(expires),
        "expired": expires <= dt.datetime.now(dt.UTC),
    }

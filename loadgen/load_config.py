"""The locustfile's settings: the ``RESGATE_*`` environment variables, read and validated into a LoadConfig.

Configuration is by environment only (names in :mod:`resgate.contract.env`, documented in
:mod:`loadgen`), so the same locustfile runs locally and on Fargate: ``RESGATE_LEDGER_DIR``,
``RESGATE_SYMBOLS``, ``RESGATE_REF_PRICES``, ``RESGATE_PRICE_BAND_PCT``, ``RESGATE_MAX_QTY``,
``RESGATE_CONNECT_TIMEOUT_S``, ``RESGATE_NETWORK_TIMEOUT_S``, ``RESGATE_MAX_ATTEMPTS``,
``RESGATE_RETRY_AFTER_CAP_S``, ``RESGATE_BACKOFF_BASE_S``, ``RESGATE_WAIT_MIN_S``, ``RESGATE_WAIT_MAX_S``,
``RESGATE_LOAD_NODE``, ``RESGATE_LEDGER_FLUSH_RECORDS``, ``RESGATE_RESEND_RATIO``,
``RESGATE_CONN_MAX_AGE_S``, ``RESGATE_STREAM_SUBSCRIBERS``, ``RESGATE_ARRIVAL_RATE`` and ``RESGATE_USERS``
(the open model's rate and the users that share it, :mod:`loadgen.pacing`); an unset or empty variable
takes its default, an invalid one raises ``ConfigError`` naming the variable before any request is made.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from loadgen import DEFAULT_SYMBOLS
from resgate.contract import env as env_names
from resgate.contract.errors import ConfigError

DEFAULT_REF_PRICES = {"AAPL": "190.00", "MSFT": "420.00", "GOOG": "170.00", "AMZN": "185.00"}


def _env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise ConfigError(f"must be a number, got {raw!r}", where=name) from None
    if not v >= minimum or v == float("inf"):
        raise ConfigError(f"must be a finite number >= {minimum:g}, got {raw!r}", where=name)
    return v


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ConfigError(f"must be an integer, got {raw!r}", where=name) from None
    if v < minimum:
        raise ConfigError(f"must be >= {minimum}, got {raw!r}", where=name)
    return v


@dataclass(frozen=True)
class LoadConfig:
    """The locustfile's settings, read from the environment by :meth:`from_env`."""

    ledger_dir: Path
    symbols: tuple[str, ...]
    ref_prices: dict[str, Decimal]
    price_band_pct: float
    max_qty: int
    connect_timeout_s: float
    network_timeout_s: float
    max_attempts: int
    retry_after_cap_s: float
    backoff_base_s: float
    wait_min_s: float
    wait_max_s: float
    node: str
    flush_every: int
    resend_ratio: float
    conn_max_age_s: float
    arrival_rate: float | None = None
    """Open model (:mod:`loadgen.pacing`): task starts per second over all ``users``; None = closed model."""
    users: int = 1
    stream_subscribers: int = 0

    @classmethod
    def from_env(cls) -> LoadConfig:
        """Read and validate the ``RESGATE_*`` variables; raises ``ConfigError`` naming the variable."""
        raw_dir = os.environ.get(env_names.ENV_LEDGER_DIR, "").strip()
        ledger_dir = Path(raw_dir) if raw_dir else Path(tempfile.gettempdir()) / "resgate-load"
        symbols = tuple(
            s.strip().upper() for s in os.environ.get(env_names.ENV_SYMBOLS, "").split(",") if s.strip()
        ) or tuple(DEFAULT_SYMBOLS)
        refs = {s: Decimal(DEFAULT_REF_PRICES.get(s, "100.00")) for s in symbols}
        for item in os.environ.get(env_names.ENV_REF_PRICES, "").split(","):
            if not item.strip():
                continue
            sym, sep, price = item.partition("=")
            try:
                value = Decimal(price.strip())
                ok = bool(sep) and value.is_finite() and value > 0
            except ArithmeticError:
                ok = False
            if not ok:
                raise ConfigError(
                    f"expected SYMBOL=price (> 0), got {item!r}", where=env_names.ENV_REF_PRICES
                )
            refs[sym.strip().upper()] = value
        wait_min = _env_float(env_names.ENV_WAIT_MIN_S, 0.1)
        wait_max = _env_float(env_names.ENV_WAIT_MAX_S, max(0.5, wait_min))
        if wait_max < wait_min:
            raise ConfigError(
                f"must be >= {env_names.ENV_WAIT_MIN_S} ({wait_min:g})", where=env_names.ENV_WAIT_MAX_S
            )
        band = _env_float(env_names.ENV_PRICE_BAND_PCT, 1.0)
        if band >= 50:
            raise ConfigError("must be < 50 (percent)", where=env_names.ENV_PRICE_BAND_PCT)
        return cls(
            ledger_dir=ledger_dir,
            symbols=symbols,
            ref_prices=refs,
            price_band_pct=band,
            max_qty=_env_int(env_names.ENV_MAX_QTY, 100),
            connect_timeout_s=_env_float(env_names.ENV_CONNECT_TIMEOUT_S, 2.0, minimum=0.01),
            network_timeout_s=_env_float(env_names.ENV_NETWORK_TIMEOUT_S, 3.0, minimum=0.01),
            max_attempts=_env_int(env_names.ENV_MAX_ATTEMPTS, 4),
            retry_after_cap_s=_env_float(env_names.ENV_RETRY_AFTER_CAP_S, 2.0),
            backoff_base_s=_env_float(env_names.ENV_BACKOFF_BASE_S, 0.1),
            wait_min_s=wait_min,
            wait_max_s=wait_max,
            node=os.environ.get(env_names.ENV_LOAD_NODE, "").strip() or secrets.token_hex(3),
            flush_every=_env_int(env_names.ENV_LEDGER_FLUSH_RECORDS, 2000),
            resend_ratio=min(1.0, _env_float(env_names.ENV_RESEND_RATIO, 0.02)),
            conn_max_age_s=_env_float(env_names.ENV_CONN_MAX_AGE_S, 2.0),
            arrival_rate=_env_float(env_names.ENV_ARRIVAL_RATE, 0.0) or None,
            users=_env_int(env_names.ENV_USERS, 1),
            stream_subscribers=_env_int(env_names.ENV_STREAM_SUBSCRIBERS, 0, minimum=0),
        )

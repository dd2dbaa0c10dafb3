-- Gateway schema of paperbroker: orders, the idempotency guard, the transactional outbox and RFQs.
-- Idempotent (CREATE ... IF NOT EXISTS); applied by paperbroker.db.ensure_gateway_schema under an
-- advisory lock so that concurrent replicas do not race.

-- One row per accepted order. The integrity checker reads this table.
CREATE TABLE IF NOT EXISTS orders (
    order_id        uuid PRIMARY KEY,
    client_id       text NOT NULL,
    idempotency_key text NOT NULL,
    body_hash       text NOT NULL,            -- sha256 of the canonical request body
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty             bigint NOT NULL CHECK (qty > 0),
    price           numeric(20, 6) NOT NULL CHECK (price > 0),
    status          text NOT NULL DEFAULT 'accepted',   -- accepted | cancel_requested
    event_id        uuid NOT NULL,            -- event_id of its OrderAccepted event
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    cancel_requested_at timestamptz
);
-- Lookup index (not the guard: the guard is order_idempotency, so the no_idempotency bug can bypass it).
CREATE INDEX IF NOT EXISTS orders_client_key_idx ON orders (client_id, idempotency_key);
CREATE INDEX IF NOT EXISTS orders_created_at_idx ON orders (created_at);

-- The uniqueness guard on (client_id, idempotency_key): written in the same transaction as the order.
CREATE TABLE IF NOT EXISTS order_idempotency (
    client_id       text NOT NULL,
    idempotency_key text NOT NULL,
    order_id        uuid NOT NULL,
    body_hash       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (client_id, idempotency_key)
);

-- Transactional outbox: one row per event; the relay publishes unsent rows in id order and sets sent_at
-- only after the broker acknowledged them. The same event_id is reused on republish.
CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    event_type  text NOT NULL,
    topic       text NOT NULL,
    key         text NOT NULL,
    payload     text NOT NULL,                -- the exact JSON bytes published (UTF-8)
    order_id    uuid,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;

-- Requests for quote and the quote the gateway answered with.
CREATE TABLE IF NOT EXISTS rfqs (
    rfq_id          uuid PRIMARY KEY,
    client_id       text NOT NULL,
    idempotency_key text,
    body_hash       text NOT NULL,
    symbol          text NOT NULL,
    side            text CHECK (side IS NULL OR side IN ('buy', 'sell')),
    qty             bigint NOT NULL CHECK (qty > 0),
    reference_price numeric(20, 6) NOT NULL,
    bid             numeric(20, 6) NOT NULL,
    ask             numeric(20, 6) NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rfqs_client_key_uq ON rfqs (client_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

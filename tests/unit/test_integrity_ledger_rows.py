"""The ledger reader (``ledger_rows``): each ledger line becomes one COPY CSV row of the fields the detectors
read, typed as ``ledger_all``'s columns, with the same values whether a line takes the fast path (orjson's
array text) or is written field by field; unusable lines are counted and named ``file:line``; blank lines
keep their numbers. Rows are read back with the csv module configured as the COPY options say."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from resgate.checks.integrity.ledger_rows import (
    BAD_SUBMIT,
    COLUMNS,
    COPY_OPTIONS,
    NOT_JSON,
    NOT_OBJECT,
    LedgerRows,
)

KINDS = {"submit_order": "submit", "cancel_order": "cancel", "get_order": "read"}
NULL = object()


def reader() -> LedgerRows:
    return LedgerRows(kinds=KINDS, cap=3)


def parse(data: bytes) -> list[dict[str, Any]]:
    """Rows as ``COPY (FORMAT csv, NULL 'null', ESCAPE '\\')`` reads them: an unquoted ``null`` is NULL, and
    inside quotes the escape character takes the next quote or escape character literally."""
    assert COPY_OPTIONS == "(FORMAT csv, NULL 'null', ESCAPE '\\')"
    rows: list[dict[str, Any]] = []
    fields: list[Any] = []
    cur, quoted, in_quotes, i = "", False, False, 0
    text = data.decode("utf-8")
    while i < len(text):
        c = text[i]
        if in_quotes:
            if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
                cur += text[i + 1]
                i += 1
            elif c == '"':
                in_quotes = False
            else:
                cur += c
        elif c == '"':
            in_quotes = quoted = True
        elif c in ",\n":
            fields.append(NULL if (cur == "null" and not quoted) else cur)
            cur, quoted = "", False
            if c == "\n":
                rows.append(dict(zip(COLUMNS, fields, strict=True)))
                fields = []
        else:
            cur += c
        i += 1
    assert not fields and not cur and not in_quotes, "a row must end with a newline"
    return rows


def rows_of(*lines: Any, label: str = "ledger.jsonl") -> tuple[LedgerRows, list[dict[str, Any]]]:
    r = reader()
    data = b"".join(r.csv(0, label, list(lines)))
    return r, parse(data)


def submit(**kw: Any) -> dict[str, Any]:
    rec = {"ts": 1.5, "op": "submit_order", "client_id": "c1", "idempotency_key": "k1", "symbol": "AAPL",
           "side": "buy", "qty": 10, "price": 100.25, "status": 201, "outcome": "ok",
           "order_id": "o1"}  # fmt: skip
    rec.update(kw)
    return rec


def line(rec: Any) -> bytes:
    return json.dumps(rec, ensure_ascii=False).encode()


def test_a_plain_submit_takes_the_fast_path_with_its_fields_typed() -> None:
    r, (row,) = rows_of(line(submit()))
    assert r.slow_rows == 0
    assert row == {"src": "0", "line": "1", "kind": "submit", "ts": "1.5", "client_id": "c1", "ikey": "k1",
                   "outcome": "ok", "status": "201", "order_id": "o1", "symbol": "AAPL", "side": "buy",
                   "qty": "10", "price": "100.25", "order_status": NULL, "filled_qty": NULL}  # fmt: skip
    assert (r.lines, r.submits, r.acked, r.submit_fields) == (1, 1, 1, 1)


def test_a_string_with_a_quote_a_comma_a_tab_or_a_backslash_reads_back_as_sent() -> None:
    for key in ['k"1', "k,1", "k\t1", "k\\1", "k\n1", "null", "{x}", "[1]", "é€"]:
        _r, (row,) = rows_of(line(submit(idempotency_key=key)))
        assert row["ikey"] == key, (key, row)


def test_an_empty_string_a_json_null_and_a_missing_field_are_all_null() -> None:
    _r, rows = rows_of(line(submit(symbol="")), line(submit(symbol=None)))
    rec = submit()
    del rec["symbol"]
    _r, more = rows_of(line(rec))
    assert [x["symbol"] for x in [rows[0], rows[1], more[0]]] == [NULL, NULL, NULL]


def test_a_quantity_that_is_no_number_is_null_and_a_numeric_string_is_its_number() -> None:
    _r, rows = rows_of(line(submit(qty="ten")), line(submit(qty=" 12.5 ")), line(submit(qty=True)))
    assert [x["qty"] for x in rows] == [NULL, "12.5", NULL]


def test_an_object_or_a_boolean_in_a_text_field_is_its_json_text() -> None:
    _r, rows = rows_of(line(submit(status={"code": 503})), line(submit(status=True)))
    assert [x["status"] for x in rows] == ['{"code":503}', "true"]


def test_an_integer_beyond_64_bits_is_read_as_its_number() -> None:
    r, (row,) = rows_of(b'{"op": "get_order", "client_id": "c", "order_id": 123456789012345678901234567890}')
    assert row["order_id"] == "123456789012345678901234567890" and r.invalid == 0


def test_lines_that_are_not_json_or_not_objects_are_counted_and_named_by_line() -> None:
    r, rows = rows_of(line(submit()), b"", b"  \t", b"{not json", b"[1, 2]", b"null", b'{"ts": NaN}',
                      line(submit(outcome="maybe")), line(submit()))  # fmt: skip
    assert [x["line"] for x in rows] == ["1", "9"]
    assert r.invalid == 5 and r.lines == 7
    assert r.invalid_examples == [
        {"where": "ledger.jsonl:4", "reason": NOT_JSON},
        {"where": "ledger.jsonl:5", "reason": NOT_OBJECT},
        {"where": "ledger.jsonl:6", "reason": NOT_OBJECT},
    ]  # capped at 3


def test_a_submit_without_a_client_is_unusable_and_one_without_a_key_is_counted_apart() -> None:
    r, rows = rows_of(line(submit(client_id="")), line(submit(idempotency_key=None)), label="f")
    assert r.invalid_examples == [{"where": "f:1", "reason": BAD_SUBMIT}]
    assert (r.submits, r.without_key, r.acked, r.acked_without_key_count) == (1, 1, 0, 1)
    assert r.acked_without_key == [{"where": "f:2", "client_id": "c1"}]
    assert rows[0]["ikey"] is NULL


def test_a_submit_whose_outcome_or_op_is_an_object_or_a_list_is_counted_not_a_crash() -> None:
    r, rows = rows_of(line(submit(outcome={"ok": 1})), line(submit(outcome=["ok"])), line(submit(op={})))
    assert rows == [] and r.invalid == 2 and r.other_ops == 1 and r.lines == 3


def test_bytes_that_are_not_utf8_are_replaced_and_counted() -> None:
    r, (row,) = rows_of(b'{"op": "get_order", "client_id": "c\xff", "order_id": "o"}')
    assert row["client_id"] == "c\ufffd" and r.not_utf8 == 1 and r.invalid == 0


def test_cancels_reads_and_other_ops_are_counted_and_only_known_ops_written() -> None:
    read = {"op": "get_order", "client_id": "c", "order_id": "o", "order_status": "open", "filled_qty": 0}
    r, rows = rows_of(line({"op": "cancel_order", "client_id": "c", "order_id": "o"}), line(read),
                      line({"op": "rfq", "client_id": "c"}), line({"op": ["x"]}))  # fmt: skip
    assert [x["kind"] for x in rows] == ["cancel", "read"]
    assert (r.cancels, r.reads, r.read_fields, r.other_ops, r.lines) == (1, 1, 1, 4, 4)
    assert rows[1]["filled_qty"] == "0"


def test_in_memory_dicts_and_strings_give_the_same_rows_as_lines() -> None:
    rec = submit(idempotency_key='k\t"x"')
    _r, from_bytes = rows_of(line(rec))
    _r, from_dict = rows_of(rec)
    _r, from_str = rows_of(json.dumps(rec))
    assert from_bytes == from_dict == from_str


text_values = st.one_of(st.none(), st.text(max_size=6), st.integers(-(10**20), 10**20), st.booleans())
number_values = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", " 3 ", "1e3"]),
)


@settings(max_examples=200, deadline=None)
@given(
    key=text_values,
    client=text_values,
    status=st.one_of(text_values, st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)),
    qty=number_values,
    price=number_values,
)
def test_the_fast_path_and_the_field_by_field_path_write_the_same_values(
    key: Any, client: Any, status: Any, qty: Any, price: Any
) -> None:
    rec = submit(idempotency_key=key, client_id=client, status=status, qty=qty, price=price)
    fast = reader()
    slow = reader()
    a = parse(b"".join(fast.csv(0, "f", [line(rec)])))
    b_row = slow.row(0, 1, "f", rec)
    b = parse(b_row) if b_row else []
    assert a == b
    assert (fast.invalid, fast.submits, fast.acked, fast.submit_fields) == (
        slow.invalid,
        slow.submits,
        slow.acked,
        slow.submit_fields,
    )

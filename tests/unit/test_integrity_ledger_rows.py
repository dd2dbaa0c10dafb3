"""The ledger reader (``ledger_rows``): each ledger line becomes one COPY CSV row of the fields the detectors
read, typed as ``ledger_all``'s columns, with the same values and counts whether a line takes the compiled
path (msgspec), the orjson path or is written field by field; unusable lines are counted and named
``file:line``; blank lines keep their numbers. Rows are read back with the csv module configured as the
COPY options say."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resgate.checks.integrity.ledger_rows import (
    _BLOCK,
    BAD_SUBMIT,
    COLUMNS,
    COPY_OPTIONS,
    NOT_JSON,
    NOT_OBJECT,
    LedgerRows,
    compiled_decoder,
)

KINDS = {"submit_order": "submit", "cancel_order": "cancel", "get_order": "read"}
NULL = object()


def reader(compiled: bool = True) -> LedgerRows:
    return LedgerRows(kinds=KINDS, cap=3, compiled=compiled)


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


# --- the compiled path (msgspec) against the orjson path ------------------------------------------------

HOSTILE = [
    b'{"op": "submit_order", "op": "get_order", "client_id": "c", "idempotency_key": "k", "outcome": "ok"}',
    b'{"op": "get_order", "op": "submit_order", "client_id": "c", "idempotency_key": "k", "outcome": "ok"}',
    b'{"op": "submit_order", "client_id": "a", "client_id": "b", "idempotency_key": "k", "outcome": "ok"}',
    b'{"op": "get_order", "qty": "x", "qty": 5}',
    b'{"op": "get_order", "qty": 5, "qty": "x"}',
    b'{"\\u006fp": "submit_order", "client_id": "c", "idempotency_key": "k", "outcome": "ok"}',
    b'{"client_id": "c", "idempotency_key": "k", "outcome": "ok"}',
    b'{"op": "", "client_id": "c"}',
    b'{"op": null, "client_id": "c"}',
    b'{"op": "get_order", "ts": 9007199254740991.0, "qty": -9007199254740991.0}',
    b'{"op": "get_order", "ts": 9007199254740992.0, "qty": -9007199254740992.0}',
    b'{"op": "get_order", "ts": 1e400}',
    b'{"op": "get_order", "status": 9223372036854775807, "qty": -9223372036854775808}',
    b'{"op": "get_order", "status": 9223372036854775808, "qty": -9223372036854775809}',
    b'{"op": "get_order", "status": 18446744073709551616, "latency_ms": 123456789012345678901234567890}',
    b'{"op": "get_order", "ts": true, "qty": false, "status": true}',
    b'{"op": "get_order", "ts": "12.5", "filled_qty": " 3 ", "price": "1e3"}',
    b'{"op": "get_order", "ts": NaN}',
    b'{"op": "get_order", "ts": Infinity}',
    b'{"op": "get_order", "client_id": "c", "x": "\xff"}',
    b'{"op": "get_order", "client_id": "\\ud800"}',
    b'{"op": "get_order", "client_id": "\\u0000"}',
    b'{"op": "get_order", "client_id": "\\u00e9\\u20ac", "order_id": "\\"q\\"\\\\"}',
    b'{"op": "get_order", "client_id": "a\\tb", "order_id": "a\\/b"}',
    b'{"op": "get_order", "client_id": "{x}", "order_id": "[1]", "symbol": "\\"\\""}',
    b'{"op": "get_order", "client_id": "", "order_id": null}',
    b'{"op": "get_order", "status": {"code": [503]}, "order_id": ["o"]}',
    b'{"op": "get_order", "x": {"y": [1, {"z": null}]}, "order_id": "o"}',
    b'\xef\xbb\xbf{"op": "get_order"}',
    b'{"op": "get_order"} trailing',
    b'  {"op": "get_order", "ts": -0, "qty": -0.0}  \r\n',
    b'{"op": "get_order", "ts": 0.1000000000000000055511151231257827021181583404541015625000001}',
    b'{"op": "get_order", "price": 1.7976931348623157e308, "qty": 5e-324}',
    b'{"op": "cancel_order", "client_id": 7, "order_id": false}',
    b'{"op": "submit_order", "client_id": "c", "idempotency_key": "k", "outcome": "OK"}',
    b'{"op": "submit_order", "client_id": 1, "idempotency_key": "k", "outcome": "ok"}',
    b'{"op": "submit_order", "client_id": "c", "idempotency_key": 1, "outcome": "ok"}',
    b'{"op": "submit_order", "client_id": "c", "idempotency_key": "", "outcome": "fail"}',
    b'{"op": "submit_order", "client_id": "c", "outcome": "ok", "symbol": "S", "qty": 1}',
    b'{"op": "rfq", "client_id": "c"}',
    b"[]",
    b"",
    b"\n",
    '{"op": "get_order", "client_id": "\u00e9"}',
    '{"op": "submit_order", "client_id": "c", "idempotency_key": "k", "outcome": "ok", "qty": 2}',
]
"""Lines at every edge where the two parsers or the two paths could part: duplicate keys, escaped keys, a
missing or empty op, numbers at the float (+-2**53) and integer (64-bit) bounds, booleans as numbers,
NaN, bytes that are not UTF-8, lone surrogates, NUL, escapes, empty strings, objects and arrays."""


def both_paths(lines: list[Any]) -> tuple[tuple[list[dict[str, Any]], dict[str, Any]], ...]:
    out = []
    for compiled in (True, False):
        r = reader(compiled)
        rows = parse(b"".join(r.csv(0, "f", lines)))
        counts = asdict(r)
        for k in ("compiled", "slow_rows"):  # which path wrote a row is the only difference allowed
            counts.pop(k)
        out.append((rows, counts))
    return tuple(out)


def test_hostile_lines_give_the_same_rows_and_counts_on_the_compiled_path_and_the_orjson_path() -> None:
    compiled, plain = both_paths(HOSTILE)
    assert compiled == plain
    rows, counts = compiled
    assert (counts["lines"], counts["invalid"], counts["not_utf8"], len(rows)) == (43, 6, 1, 33)


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_each_hostile_line_alone_gives_the_same_row_and_counts_on_both_paths(hostile: Any) -> None:
    compiled, plain = both_paths([hostile])
    assert compiled == plain


def decoded_kind(line: bytes) -> str | None:
    """The kind the compiled path reads a line as, or None when msgspec refuses it (the orjson path's)."""
    built = compiled_decoder(KINDS)
    assert built is not None
    decoder, kinds = built
    try:
        return kinds.get(type(decoder.decode(line)))
    except msgspec.DecodeError:
        return None


def test_a_plain_submit_read_and_cancel_take_the_compiled_path() -> None:
    assert decoded_kind(line(submit())) == "submit"
    assert (
        decoded_kind(b'{"op": "get_order", "order_id": "o", "order_status": "open", "filled_qty": 0}')
        == "read"
    )
    assert decoded_kind(b'{"op": "cancel_order", "order_id": "o", "status": 200}') == "cancel"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (b'{"op": "get_order", "ts": 9007199254740991.0}', "read"),
        (b'{"op": "get_order", "ts": 9007199254740992.0}', None),
        (b'{"op": "get_order", "qty": -9007199254740991.0}', "read"),
        (b'{"op": "get_order", "qty": -9007199254740992.0}', None),
        (b'{"op": "get_order", "qty": 9223372036854775807}', "read"),
        (b'{"op": "get_order", "qty": 9223372036854775808}', None),
        (b'{"op": "get_order", "status": -9223372036854775808}', "read"),
        (b'{"op": "get_order", "status": -9223372036854775809}', None),
        (b'{"op": "get_order", "status": 1.0}', None),
        (b'{"op": "get_order", "status": "x"}', "read"),
        (b'{"op": "get_order", "status": ""}', None),
        (b'{"client_id": "c", "idempotency_key": "k", "outcome": "ok"}', None),
        (b'{"op": "", "client_id": "c"}', None),
        (b'{"op": "rfq"}', None),
        (b'{"op": "submit_order", "client_id": "c", "idempotency_key": "k", "outcome": "info"}', "submit"),
        (b'{"op": "submit_order", "client_id": "c", "idempotency_key": "k", "outcome": "maybe"}', None),
        (b'{"op": "submit_order", "client_id": "c", "idempotency_key": "", "outcome": "ok"}', None),
    ],
)
def test_the_compiled_path_takes_a_line_only_within_the_orjson_paths_bounds(
    text: bytes, kind: str | None
) -> None:
    """At each bound: a float strictly within +-2**53, a 64-bit signed integer, no float or empty string in a
    text field, an op the checks read (a line with none is not taken), a submit's outcome in its enum."""
    assert decoded_kind(text) == kind


def test_a_single_op_read_still_refuses_a_line_with_no_op() -> None:
    """A lone tagged Struct would take a line without the tag; the decoy member keeps it refused."""
    built = compiled_decoder({"get_order": "read"})
    assert built is not None
    decoder, kinds = built
    with pytest.raises(msgspec.ValidationError, match="op"):
        decoder.decode(b'{"client_id": "c"}')
    assert kinds[type(decoder.decode(b'{"op": "get_order"}'))] == "read"
    assert compiled_decoder({}) is None


def test_an_empty_op_name_that_the_checks_read_is_not_taken_by_the_decoy() -> None:
    built = compiled_decoder({"": "read", "\x00": "cancel"})
    assert built is not None
    decoder, kinds = built
    assert kinds[type(decoder.decode(b'{"op": ""}'))] == "read"
    assert kinds[type(decoder.decode(b'{"op": "\\u0000"}'))] == "cancel"
    assert kinds.get(type(decoder.decode(b'{"op": "\\u0000\\u0000"}'))) is None


any_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=4),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=4,
)
LEDGER_KEYS = ("ts", "client_id", "idempotency_key", "outcome", "status", "order_id", "symbol", "side", "qty",
               "price", "order_status", "filled_qty", "latency_ms")  # fmt: skip
edge_numbers = st.sampled_from([2**53 - 1, 2**53, -(2**53), 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 1e16, 0.5])


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(["submit_order", "cancel_order", "get_order", "rfq", "", None, 1]),
    fields=st.dictionaries(
        st.sampled_from(LEDGER_KEYS),
        st.one_of(any_json, edge_numbers, st.sampled_from(["ok", "fail", "info", "", "1.5"])),
        max_size=13,
    ),
    ascii_only=st.booleans(),
)
def test_generated_records_give_the_same_rows_and_counts_on_both_paths(
    op: Any, fields: dict[str, Any], ascii_only: bool
) -> None:
    rec = {"op": op, **fields}
    text = json.dumps(rec, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass")
    compiled, plain = both_paths([text])
    assert compiled == plain


# --- a file, a block of lines at a time, against the same lines one by one ------------------------------


def as_file(lines: list[Any]) -> bytes:
    """The lines as one ledger file (str encoded as UTF-8, each line ended by a newline)."""
    return b"".join(
        (x.encode("utf-8", errors="surrogatepass") if isinstance(x, str) else x) + b"\n" for x in lines
    )


def block_and_line_paths(data: bytes) -> tuple[tuple[list[dict[str, Any]], dict[str, Any]], ...]:
    """``(rows, counts)`` of one file read as a file (:meth:`LedgerRows._csv_blocks`) and as a list of its
    lines (line by line, the compiled path first); rows in line order (blocks write them out of order)."""
    out = []
    for items in (io.BytesIO(data), io.BytesIO(data).readlines()):
        r = reader()
        rows = sorted(parse(b"".join(r.csv(0, "f", items))), key=lambda row: int(row["line"]))
        counts = asdict(r)
        counts.pop("slow_rows")
        out.append((rows, counts))
    return tuple(out)


def test_hostile_lines_in_a_file_give_the_same_rows_and_counts_as_line_by_line() -> None:
    block, lines = block_and_line_paths(as_file(HOSTILE))
    assert block == lines
    assert (block[1]["lines"], block[1]["invalid"], len(block[0])) == (43, 6, 33)


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_each_hostile_line_amid_plain_lines_in_a_file_gives_the_same_rows_and_counts(hostile: Any) -> None:
    """One hostile line among plain ones: a block with an escape goes line by line, one that is not ASCII
    too, one with a bracket in a string cuts each row's own brackets, a refused line goes alone."""
    plain = [line(submit(idempotency_key=f"k{i}")) for i in range(3)]
    block, lines = block_and_line_paths(as_file([*plain, hostile, *plain]))
    assert block == lines


@pytest.mark.parametrize(
    ("odd", "written"),
    [
        (line(submit(client_id="a[b", side="]")), True),  # brackets in strings, no escape: the block path
        (line(submit(client_id="a\\b")), True),  # an escape: the whole block line by line
        (line(submit(client_id="\u00e9")), True),  # not ASCII: the whole block line by line
        (b"", False),  # blank: refused, alone
        (b'{"op": "rfq"}', False),  # an op not read: the decoy's tag, alone
    ],
    ids=["bracket", "escape", "not-ascii", "blank", "other-op"],
)
def test_a_file_of_several_blocks_numbers_its_lines_across_blocks(odd: bytes, written: bool) -> None:
    """Over three blocks, the odd line in the middle one; the same CSV rows (compared as bytes, in line
    order) and counts as line by line, and every line keeps its number."""
    recs: list[Any] = []
    n = 3 * _BLOCK // 100  # the lines are 100 bytes or more
    for i in range(n):
        if i % 7 == 0:
            recs.append(line({"op": "get_order", "client_id": f"c{i % 5}", "order_id": f"o{i}",
                              "order_status": "open", "filled_qty": i % 3}))  # fmt: skip
        elif i % 11 == 0:
            recs.append(line({"op": "cancel_order", "client_id": f"c{i % 5}", "order_id": f"o{i}"}))
        else:
            outcome = ("ok", "fail", "info")[i % 3]
            fields = {} if i % 13 == 0 else {"symbol": "AAPL", "qty": i}
            recs.append(line({"op": "submit_order", "client_id": f"c{i % 5}", "idempotency_key": f"k{i}",
                              "outcome": outcome, "ts": i / 8, "price": None, **fields}))  # fmt: skip
    recs[n // 2] = odd
    data = as_file(recs)
    assert len(data) > 3 * _BLOCK
    out = []
    for items in (io.BytesIO(data), io.BytesIO(data).readlines()):
        r = reader()
        rows = b"".join(r.csv(0, "f", items)).splitlines()
        counts = asdict(r)
        counts.pop("slow_rows")
        out.append((sorted(rows, key=lambda row: int(row.split(b",")[1])), counts))
    assert out[0] == out[1]
    rows, counts = out[0]
    assert [int(row.split(b",")[1]) for row in rows] == [
        i for i in range(1, n + 1) if written or i != n // 2 + 1
    ]
    assert counts["submits"] > 0 and counts["cancels"] > 0 and counts["read_fields"] > 0


@settings(max_examples=200, deadline=None)
@given(
    recs=st.lists(
        st.fixed_dictionaries(
            {"op": st.sampled_from(["submit_order", "cancel_order", "get_order", "rfq"])},
            optional={
                k: st.one_of(any_json, edge_numbers, st.sampled_from(["ok", "fail", "info", "", "[x]"]))
                for k in LEDGER_KEYS
            },
        ),
        max_size=12,
    ),
    ascii_only=st.booleans(),
)
def test_generated_files_give_the_same_rows_and_counts_as_line_by_line(
    recs: list[dict[str, Any]], ascii_only: bool
) -> None:
    data = as_file(
        [json.dumps(r, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass") for r in recs]
    )
    block, lines = block_and_line_paths(data)
    assert block == lines


@pytest.mark.parametrize("field", ["symbol", "side", "qty", "price"])
def test_a_submit_in_a_file_carrying_one_field_alone_counts_as_carrying_fields(field: str) -> None:
    rec = {k: v for k, v in submit().items() if k not in ("symbol", "side", "qty", "price")}
    rec[field] = submit()[field]
    block, lines = block_and_line_paths(as_file([line(rec), line({**rec, field: None})]))
    assert block == lines and block[1]["submit_fields"] == 1


@pytest.mark.parametrize(("field", "value"), [("order_status", "open"), ("filled_qty", 0)])
def test_a_read_in_a_file_carrying_one_field_alone_counts_as_carrying_fields(field: str, value: Any) -> None:
    rec = {"op": "get_order", "client_id": "c1", "order_id": "o1", field: value}
    block, lines = block_and_line_paths(as_file([line(rec), line({**rec, field: None})]))
    assert block == lines and block[1]["read_fields"] == 1

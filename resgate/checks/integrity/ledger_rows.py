"""The client ledger's lines as COPY CSV rows of the work table ``ledger_all``: a reader made for the job.

Each ledger line becomes one CSV row of only the fields the detectors read, typed as the columns of
:data:`COLUMNS`. Nearly every line takes the compiled path: msgspec decodes it into a typed Struct of its
op (:func:`compiled_decoder`: a tagged union on ``op``, so each op's required fields, the outcome's enum,
each field's JSON type and each float's range are checked in C) and encodes the fields as one JSON array
whose text, brackets dropped, already is a CSV row for ``COPY ... (FORMAT csv, NULL 'null', ESCAPE '\\')``
(JSON strings are double-quoted with ``\\"`` and ``\\\\`` escapes, exactly CSV with that escape character;
an unquoted ``null`` is NULL). A line msgspec refuses (not ASCII, an op the checks do not read, a field of
another type, an escape in the row) takes the orjson path, the same row built from orjson's parse with the
same checks in Python; a line whose fields hold anything else (an object, an array, an escape other than
those two, an empty string, a non-numeric quantity) is written field by field, and a line orjson refuses
(an integer beyond 64 bits, bytes that are not UTF-8) is parsed by the standard library's parser. Every
path writes the same values and keeps the same counts. Lines of an unknown op are only counted; a line
that is not a JSON object, or a submit without a client or a valid outcome, is counted and named
``file:line``, never written. :class:`LedgerRows` counts as it goes, so the load needs no second pass over
the table.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Literal

import msgspec
import orjson

from resgate.checks.integrity.load import LedgerLoad

COLUMNS = (
    "src",
    "line",
    "kind",
    "ts",
    "client_id",
    "ikey",
    "outcome",
    "status",
    "order_id",
    "symbol",
    "side",
    "qty",
    "price",
    "order_status",
    "filled_qty",
)
"""The columns of ``ledger_all``, in the order each CSV row gives them."""

COLUMN_TYPES = {"src": "int", "line": "bigint", "ts": "float8", "qty": "numeric", "price": "numeric",
                "filled_qty": "numeric"}  # fmt: skip
"""SQL types of the typed columns; every other column is ``text``."""

COPY_OPTIONS = "(FORMAT csv, NULL 'null', ESCAPE '\\')"
"""The COPY options the rows are written for."""

_OUTCOMES = frozenset(("ok", "fail", "info"))
_NUMBER = re.compile(r"^\s*-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$")
_CHUNK = 1 << 20
_BLOCK = 1 << 17  # a file's lines are read 128 KiB at a time: the block's objects stay in the CPU's caches
_NO_FIELDS = (None, None, None, None)
_EXACT = float(1 << 53)  # a float beyond may be an integer orjson could not hold exactly

_INT = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]  # int64: msgspec's widest bound
_NUMBER_FIELD = _INT | Annotated[float, msgspec.Meta(gt=-_EXACT, lt=_EXACT)] | None
_TEXT_FIELD = Annotated[str, msgspec.Meta(min_length=1)] | _INT | bool | None  # no float, object or array
_FIELDS = ("ts", "client_id", "idempotency_key", "outcome", "status", "order_id", "symbol", "side", "qty",
           "price", "order_status", "filled_qty")  # fmt: skip
"""The JSON fields of :data:`COLUMNS` after ``src, line, kind``, in that order."""
_NUMBER_FIELDS = frozenset(("ts", "qty", "price", "filled_qty"))
_SUBMIT_REQUIRED = {
    "client_id": Annotated[str, msgspec.Meta(min_length=1)],
    "idempotency_key": Annotated[str, msgspec.Meta(min_length=1)],
    "outcome": Literal["ok", "fail", "info"],
}

NOT_JSON = "not JSON"
NOT_OBJECT = "not a JSON object"
BAD_SUBMIT = "a submit record needs client_id and outcome ok|fail|info"


def compiled_decoder(kinds: Mapping[str, str]) -> tuple[msgspec.json.Decoder[Any], dict[type, str]] | None:
    """A msgspec decoder of the lines the compiled path takes, and each Struct type's kind; None if no op is
    read.

    One Struct per op read, tagged by ``op`` (only that op's lines decode into it), with the twelve fields
    of :data:`_FIELDS` typed as the orjson path accepts them: numbers are a 64-bit integer or a float
    strictly within +-2**53, texts a non-empty string, an integer or a boolean, every field optional but a
    submit's client, key (non-empty strings) and outcome (``ok|fail|info``). Unknown fields are skipped.
    A decoy member of another tag keeps the union a union: a lone tagged Struct would take a line with no
    ``op`` at all.
    """
    types: dict[type, str] = {}
    for op, kind in kinds.items():
        if type(op) is not str:
            continue
        fields: list[Any] = []
        for f in _FIELDS:
            if kind == "submit" and f in _SUBMIT_REQUIRED:
                fields.append((f, _SUBMIT_REQUIRED[f]))
            else:
                fields.append((f, _NUMBER_FIELD if f in _NUMBER_FIELDS else _TEXT_FIELD, None))
        name = f"LedgerLine{len(types)}"
        t = msgspec.defstruct(name, fields, tag_field="op", tag=op, kw_only=True, gc=False)
        types[t] = kind
    if not types:
        return None
    decoy = ""
    while decoy in kinds:
        decoy += "\x00"
    union: Any = msgspec.defstruct("LedgerLineOther", [], tag_field="op", tag=decoy, gc=False)
    for t in types:
        union = union | t
    return msgspec.json.Decoder(union), types


@dataclass(kw_only=True)
class LedgerRows(LedgerLoad):
    """The reader: it counts into the :class:`~.load.LedgerLoad` figures as it goes (the same figures the
    detectors' judging and the report use), so :func:`~.load.load_ledger` returns it as its result."""

    kinds: Mapping[str, str]
    """ledger ``op`` -> ``'submit'``, ``'cancel'`` or ``'read'``."""
    cap: int
    compiled: bool = True
    """Read lines with msgspec first (:func:`compiled_decoder`); False: the orjson path alone (the tests
    compare the two)."""

    def _invalid(self, where: str, reason: str) -> None:
        self.invalid += 1
        if len(self.invalid_examples) < self.cap:
            self.invalid_examples.append({"where": where, "reason": reason})

    @cached_property
    def _compiled(self) -> tuple[msgspec.json.Decoder[Any], dict[type, str]] | None:
        return compiled_decoder(self.kinds) if self.compiled else None

    def csv(self, src: int, label: str, items: Iterable[Any]) -> Iterator[bytes]:
        """CSV chunks (at most about 1 MiB each) of the rows of one source's ``items`` (lines as bytes or str,
        dicts, or objects with ``to_dict()``, or a file opened as bytes), numbered from 1 in order; blank
        lines keep their numbers. Rows come in no particular order (each carries its line number).

        A file takes :meth:`_csv_blocks` (a block of lines at a time), anything else :meth:`_csv_lines`
        (line by line); both write the same rows and keep the same counts.
        """
        if self._compiled is not None and isinstance(items, io.BufferedIOBase):
            return self._csv_blocks(src, label, items)
        return self._csv_lines(src, label, enumerate(items, start=1))

    def _csv_blocks(self, src: int, label: str, fh: io.BufferedIOBase) -> Iterator[bytes]:
        """The rows of a file read as bytes, a block of lines at a time.

        A block (about 128 KiB of lines) that is all ASCII goes through msgspec with nothing else per line
        (the checks of :meth:`_csv_lines`' compiled path are made once per block): each line msgspec takes
        is encoded as a JSON array; the block's arrays, joined by newlines and without their brackets, are
        its CSV rows when no escape is in them (else the whole block goes line by line) and no bracket is
        in a string (else each array's own brackets are cut). The lines msgspec refuses, and any block that
        is not all ASCII, go to :meth:`_csv_lines`.
        """
        assert self._compiled is not None
        decode, kind_of = self._compiled[0].decode, self._compiled[1].get
        encode, astuple, refused = msgspec.json.Encoder().encode, msgspec.structs.astuple, msgspec.DecodeError
        first = 1
        while block := fh.readlines(_BLOCK):
            start, first = first, first + len(block)
            if not b"".join(block).isascii():  # msgspec does not check the UTF-8 of the fields it skips
                yield from self._csv_lines(src, label, enumerate(block, start=start))
                continue
            arrays: list[bytes] = []
            add = arrays.append
            others: list[tuple[int, bytes]] = []
            submits = acked = submit_fields = cancels = reads = read_fields = 0
            for n, item in enumerate(block, start=start):
                try:
                    r = decode(item)
                except refused:
                    others.append((n, item))
                    continue
                kind = kind_of(type(r))
                if kind is None:  # the decoy's tag
                    others.append((n, item))
                    continue
                t = astuple(r)
                add(encode((src, n, kind, *t)))
                if kind == "submit":
                    submits += 1
                    if t[3] == "ok":
                        acked += 1
                    if t[6] is not None or t[7] is not None or t[8] is not None or t[9] is not None:
                        submit_fields += 1
                elif kind == "cancel":
                    cancels += 1
                else:
                    reads += 1
                    if t[10] is not None or t[11] is not None:
                        read_fields += 1
            data = b"\n".join(arrays)
            if data.find(b"\\") >= 0:  # an escape CSV would not undo
                yield from self._csv_lines(src, label, enumerate(block, start=start))
                continue
            if arrays:
                if data.count(b"[") == len(arrays) == data.count(b"]"):
                    yield data.translate(None, b"[]") + b"\n"
                else:  # a bracket in a string
                    yield b"".join(a[1:-1] + b"\n" for a in arrays)
            self.lines += len(arrays)
            self.submits += submits
            self.acked += acked
            self.submit_fields += submit_fields
            self.other_ops += cancels + reads
            self.cancels += cancels
            self.reads += reads
            self.read_fields += read_fields
            if others:
                yield from self._csv_lines(src, label, others)

    def _csv_lines(self, src: int, label: str, numbered: Iterable[tuple[int, Any]]) -> Iterator[bytes]:
        """The rows of ``(line number, item)`` pairs, line by line.

        The loop below is the common case only (a bytes line holding a JSON object of a known op whose
        fields are strings and plain numbers), written for speed: locals, no call but the parsers' and
        the writers'; first the compiled path (msgspec), then, for a line it refuses, the orjson path.
        Anything else goes to :meth:`row`, which handles (and counts) every case.
        """
        out: list[bytes] = []
        size = 0
        loads, dumps, decode_error = orjson.loads, orjson.dumps, orjson.JSONDecodeError
        kinds_get, row = self.kinds.get, self.row
        compiled = self._compiled
        decode = compiled[0].decode if compiled is not None else None
        kind_of = compiled[1].get if compiled is not None else None
        encode, astuple, refused = msgspec.json.Encoder().encode, msgspec.structs.astuple, msgspec.DecodeError
        lines = submits = acked = other = cancels = reads = submit_fields = read_fields = 0
        try:
            for n, item in numbered:
                b = None
                if decode is not None and (type(item) is bytes or type(item) is str) and item.isascii():
                    # ASCII only: msgspec does not check the UTF-8 of the fields it skips, orjson does
                    try:
                        r = decode(item)
                    except refused:
                        r = None
                    kind = kind_of(type(r))  # None for the decoy's tag
                    if kind is not None:
                        t = astuple(r)
                        s = encode((src, n, kind, *t))
                        if s.find(b"\\") < 0:  # no escape CSV would not undo
                            b = s[1:-1] + b"\n"
                            lines += 1
                            if kind == "submit":
                                submits += 1
                                if t[3] == "ok":
                                    acked += 1
                                if t[6:10] != _NO_FIELDS:
                                    submit_fields += 1
                            else:
                                other += 1
                                if kind == "cancel":
                                    cancels += 1
                                else:
                                    reads += 1
                                    if t[10] is not None or t[11] is not None:
                                        read_fields += 1
                if b is None and (type(item) is bytes or type(item) is str):
                    try:
                        d = loads(item)
                    except decode_error:
                        d = None
                    if type(d) is dict:
                        g = d.get
                        op = g("op")
                        kind = kinds_get(op) if type(op) is str else None
                        vals = (src, n, kind, g("ts"), g("client_id"), g("idempotency_key"), g("outcome"),
                                g("status"), g("order_id"), g("symbol"), g("side"), g("qty"), g("price"),
                                g("order_status"), g("filled_qty"))  # fmt: skip
                        ts, client, key, outcome = vals[3], vals[4], vals[5], vals[6]
                        qty, price, filled = vals[11], vals[12], vals[14]
                        if kind is None:
                            if type(op) is str:  # an op the checks do not read
                                lines += 1
                                other += 1
                                continue
                        elif (
                            (ts is None or (type(ts) is float and -_EXACT < ts < _EXACT) or type(ts) is int)
                            and (
                                qty is None
                                or type(qty) is int
                                or (type(qty) is float and -_EXACT < qty < _EXACT)
                            )
                            and (
                                price is None
                                or (type(price) is float and -_EXACT < price < _EXACT)
                                or type(price) is int
                            )
                            and (
                                filled is None
                                or type(filled) is int
                                or (type(filled) is float and -_EXACT < filled < _EXACT)
                            )
                            and float
                            not in (
                                type(client),
                                type(key),
                                type(outcome),
                                type(vals[7]),
                                type(vals[8]),
                                type(vals[9]),
                                type(vals[10]),
                                type(vals[13]),
                            )
                            and (
                                kind != "submit"
                                or (
                                    type(client) is str
                                    and type(key) is str
                                    and type(outcome) is str
                                    and outcome in _OUTCOMES
                                )
                            )
                        ):
                            s = dumps(vals)
                            # no escape CSV would not undo, no object or array, no empty string (NULL)
                            if (
                                s.find(b"\\") < 0
                                and s.find(b"{") < 0
                                and s.find(b"[", 1) < 0
                                and s.find(b'""') < 0
                            ):
                                b = s[1:-1] + b"\n"
                                lines += 1
                                if kind == "submit":
                                    submits += 1
                                    if outcome == "ok":
                                        acked += 1
                                    if (vals[9], vals[10], qty, price) != _NO_FIELDS:
                                        submit_fields += 1
                                else:
                                    other += 1
                                    if kind == "cancel":
                                        cancels += 1
                                    else:
                                        reads += 1
                                        if vals[13] is not None or filled is not None:
                                            read_fields += 1
                if b is None:
                    b = row(src, n, label, item)
                    if b is None:
                        continue
                out.append(b)
                size += len(b)
                if size >= _CHUNK:
                    yield b"".join(out)
                    out.clear()
                    size = 0
            if out:
                yield b"".join(out)
        finally:
            self.lines += lines
            self.submits += submits
            self.acked += acked
            self.other_ops += other
            self.cancels += cancels
            self.reads += reads
            self.submit_fields += submit_fields
            self.read_fields += read_fields

    def row(self, src: int, n: int, label: str, item: Any) -> bytes | None:
        """The CSV row (newline-terminated) of one ledger item, or None (blank, unknown op, unusable)."""
        if isinstance(item, (bytes, bytearray, str)):
            d = self._parse(n, label, item)
            if d is _SKIP:
                return None
        elif isinstance(item, Mapping):
            d = item
        elif hasattr(item, "to_dict"):
            d = item.to_dict()
        elif item is None:
            return None
        else:
            d = item
        self.lines += 1
        if type(d) is not dict:
            if not isinstance(d, Mapping):
                self._invalid(f"{label}:{n}", NOT_OBJECT)
                return None
            d = dict(d)
        g = d.get
        op = g("op")
        kind = self.kinds.get(op if type(op) is str else _text(op) or "")
        if kind is None:
            self.other_ops += 1
            return None
        client, outcome, key = g("client_id"), g("outcome"), g("idempotency_key")
        if kind == "submit":
            if _text(client) is None or type(outcome) is not str or outcome not in _OUTCOMES:
                self._invalid(f"{label}:{n}", BAD_SUBMIT)
                return None
            self.submits += 1
            if _text(key) is None:
                self.without_key += 1
                if outcome == "ok":
                    self.acked_without_key_count += 1
                    if len(self.acked_without_key) < self.cap:
                        self.acked_without_key.append({"where": f"{label}:{n}", "client_id": _text(client)})
            elif outcome == "ok":
                self.acked += 1
            # counted on the values as typed in the table (a field that is "" or no number is NULL)
            typed = (_text(g("symbol")), _text(g("side")), _num(g("qty")), _num(g("price")))
            if typed != (None, None, None, None):
                self.submit_fields += 1
        else:
            self.other_ops += 1
            if kind == "cancel":
                self.cancels += 1
            else:
                self.reads += 1
                if _text(g("order_status")) is not None or _num(g("filled_qty")) is not None:
                    self.read_fields += 1
        vals = (src, n, kind, g("ts"), client, key, outcome, g("status"), g("order_id"), g("symbol"),
                g("side"), g("qty"), g("price"), g("order_status"), g("filled_qty"))  # fmt: skip
        self.slow_rows += 1
        return _slow_row(vals)

    def _parse(self, n: int, label: str, line: bytes | bytearray | str) -> Any:
        """The line's JSON value, or ``_SKIP`` for a blank line or one that is no JSON (counted, named).

        The standard library's parser, here off the fast path: it reads an integer beyond 64 bits exactly
        (orjson makes it a float) and accepts what orjson refuses only where Postgres's own parser would
        (NaN and Infinity are not JSON).
        """
        if isinstance(line, str):
            text = line
        else:
            try:
                text = bytes(line).decode("utf-8")
            except UnicodeDecodeError:
                text = bytes(line).decode("utf-8", errors="replace")
                self.not_utf8 += 1
        if not text.strip():
            return _SKIP
        try:
            return json.loads(text, parse_constant=_no_constant)
        except ValueError:
            self.lines += 1
            self._invalid(f"{label}:{n}", NOT_JSON)
            return _SKIP


_SKIP = object()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _text(v: Any) -> str | None:
    """A field as the text column holds it: strings as they are (NUL replaced), numbers and booleans as
    their JSON text, objects and arrays as JSON; None for a missing field, JSON null or the empty string."""
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v.replace("\x00", "\ufffd")
    try:
        return orjson.dumps(v, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(v, default=str)


def _num(v: Any) -> int | float | str | None:
    """A field as a numeric column holds it: a JSON number, or a string that reads as one; else None."""
    if type(v) is int:
        return v
    if type(v) is float:
        return v if math.isfinite(v) else None
    if type(v) is str and _NUMBER.match(v):
        return v.strip()
    if isinstance(v, Decimal):  # an in-memory record's
        return str(v) if v.is_finite() else None
    return None


def _quoted(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _slow_row(vals: tuple[Any, ...]) -> bytes:
    """One row written field by field: each text quoted and escaped for CSV, each number checked."""
    src, n, kind, ts, *rest = vals
    texts = [_text(v) for v in rest[:7]]
    qty, price, order_status, filled = _num(rest[7]), _num(rest[8]), _text(rest[9]), _num(rest[10])
    ts_n = _num(ts)
    fields = [str(src), str(n), kind, "null" if ts_n is None else str(ts_n)]
    fields += ["null" if t is None else _quoted(t) for t in texts]
    fields += ["null" if x is None else str(x) for x in (qty, price)]
    fields.append("null" if order_status is None else _quoted(order_status))
    fields.append("null" if filled is None else str(filled))
    return (",".join(fields) + "\n").encode("utf-8", errors="replace")  # a lone surrogate

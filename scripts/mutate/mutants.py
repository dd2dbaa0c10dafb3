"""Mutants of a Python module, one small change each, written by walking its syntax tree.

The classic operators, applied one at a time: a comparison moved across its boundary or negated
(``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``in``/``not in``, ``is``/``is not``), ``and``/``or`` swapped, a
``not`` dropped, an integer constant moved by one, ``True``/``False`` swapped, ``+``/``-`` swapped, and a
statement dropped (replaced by ``pass``). Docstrings, type annotations and ``assert`` statements are left
alone. Only the functions a target names are mutated, so a module's I/O half (measured by integration
tests) does not dilute the score of its pure half.

Each :class:`Mutant` carries a stable id (``module:function:line:col:operator``) so a mutant's verdict
and an equivalence note can be matched across runs.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterator
from dataclasses import dataclass

_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BIN_SWAP: dict[type[ast.operator], type[ast.operator]] = {ast.Add: ast.Sub, ast.Sub: ast.Add}


@dataclass(frozen=True)
class Mutant:
    """One mutant: where it is, what it changes, and the whole mutated module source."""

    id: str
    module: str
    function: str
    line: int
    operator: str
    before: str
    after: str
    source: str


def _sites(tree: ast.Module, functions: set[str] | None) -> Iterator[tuple[str, ast.AST, ast.AST | None]]:
    """``(function name, node, parent statement list owner)`` for every node inside the chosen functions."""
    for top in ast.walk(tree):
        if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if functions is not None and top.name not in functions:
            continue
        skip: set[int] = set()
        for node in ast.walk(top):
            if isinstance(node, (ast.arg, ast.Assert)) or node is top.returns:
                skip.update(id(n) for n in ast.walk(node))
            if isinstance(node, ast.AnnAssign):
                skip.update(id(n) for n in ast.walk(node.annotation))
        for node in ast.walk(top):
            if id(node) in skip or (
                node is not top and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            ):
                continue
            yield top.name, node, top


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _edits(node: ast.AST) -> Iterator[tuple[str, str, str, object]]:
    """``(operator, before, after, edit)`` for each single change of ``node``; ``edit`` is applied by
    :func:`_apply` to the node's copy."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            new = _CMP_SWAP.get(type(op))
            if new is not None:
                yield "compare", type(op).__name__, new.__name__, ("ops", i, new)
    elif isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield "boolop", type(node.op).__name__, other.__name__, ("boolop", other)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not", "not x", "x", ("unnot",)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BIN_SWAP:
        new = _BIN_SWAP[type(node.op)]
        yield "arith", type(node.op).__name__, new.__name__, ("binop", new)
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            yield "bool", repr(v), repr(not v), ("const", not v)
        elif isinstance(v, int):
            yield "const+1", repr(v), repr(v + 1), ("const", v + 1)
            yield "const-1", repr(v), repr(v - 1), ("const", v - 1)
    for field in ("body", "orelse", "finalbody"):
        stmts = getattr(node, field, None)
        if not isinstance(stmts, list):
            continue
        for i, stmt in enumerate(stmts):
            if (
                not isinstance(stmt, ast.stmt)
                or _is_docstring(stmt)
                or isinstance(stmt, (ast.Pass, ast.Assert))
            ):
                continue
            if isinstance(
                stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
            ):
                continue
            text = ast.unparse(stmt).splitlines()[0]
            yield "drop", text[:80], "pass", ("drop", field, i, stmt.lineno, stmt.col_offset)


def _apply(node: ast.AST, edit: tuple) -> None:
    kind = edit[0]
    if kind == "ops":
        node.ops[edit[1]] = edit[2]()  # type: ignore[attr-defined]
    elif kind in ("boolop", "binop"):
        node.op = edit[1]()  # type: ignore[attr-defined]
    elif kind == "const":
        node.value = edit[1]  # type: ignore[attr-defined]
    elif kind == "drop":
        stmts = getattr(node, edit[1])
        stmts[edit[2]] = ast.copy_location(ast.Pass(), stmts[edit[2]])


def _replace_unnot(tree: ast.AST, target: ast.UnaryOp) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is target:
                setattr(parent, field, target.operand)
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    if v is target:
                        value[i] = target.operand


def mutants(path: str, module: str, functions: set[str] | None = None) -> list[Mutant]:
    """Every mutant of the module at ``path`` (inside ``functions``, or everywhere when None)."""
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    tree = ast.parse(source)
    plan: list[tuple[str, int, int, str, str, str, tuple]] = []
    positions: list[ast.AST] = []
    for fn, node, _top in _sites(tree, functions):
        for op, before, after, edit in _edits(node):
            line = edit[3] if edit[0] == "drop" else getattr(node, "lineno", 0)  # type: ignore[index]
            col = edit[4] if edit[0] == "drop" else getattr(node, "col_offset", 0)  # type: ignore[index]
            plan.append((fn, line, col, op, before, after, edit))
            positions.append(node)
    out: list[Mutant] = []
    seen: dict[str, int] = {}
    for (fn, line, col, op, before, after, edit), node in zip(plan, positions, strict=True):
        # Mutate a deep copy: find the node's twin by walking both trees in the same order.
        twin_tree = copy.deepcopy(tree)
        twin = next(b for a, b in zip(ast.walk(tree), ast.walk(twin_tree), strict=True) if a is node)
        if edit[0] == "unnot":
            _replace_unnot(twin_tree, twin)  # type: ignore[arg-type]
        else:
            _apply(twin, edit)
        try:
            mutated = ast.unparse(ast.fix_missing_locations(twin_tree))
            compile(mutated, path, "exec")
        except (SyntaxError, ValueError):
            continue
        base = f"{module}:{fn}:{line}:{col}:{op}"
        n = seen.get(base, 0)
        seen[base] = n + 1
        mid = base if n == 0 else f"{base}#{n}"
        out.append(Mutant(mid, module, fn, line, op, before, after, mutated))
    return out

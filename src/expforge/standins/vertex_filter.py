"""The subset of AIP-160 list filters the aiplatform SDK sends, evaluated against stored resources.

Why a parser: ``Model.list(filter=...)``, the Experiments SDK's ``Context.list`` / ``Execution.list`` and
friends push their selection to the server (``schema_title="system.ExperimentRun" AND
parent_contexts:"projects/..."``, ``labels.team="x"``, ``in_context("...")``). Answering them unfiltered would
make the SDK see other experiments' runs. Supported: ``AND``/``OR``/``NOT``/``-``, parentheses, comparisons
``= != < > <= >= :`` on dotted field paths (``metadata.x.number_value`` works as ``metadata.x``), string or
number literals, and functions registered by the caller (``in_context(...)``, ``with_ancestor(...)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from expforge.standins.vertex_grpc import invalid

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op><=|>=|!=|=|<|>|:)
      | (?P<paren>[()])
      | (?P<comma>,)
      | (?P<word>[^\s()=<>!:,"']+)
    )""",
    re.VERBOSE,
)

Functions = Mapping[str, Callable[[Any, list[str]], bool]]


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise invalid(f"filter: cannot parse {text[position:]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, functions: Functions) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.functions = functions

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise invalid("filter: unexpected end")
        self.i += 1
        return token

    def parse(self) -> Callable[[Any], bool]:
        expr = self.expression()
        if self.peek() is not None:
            raise invalid(f"filter: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return expr

    def expression(self) -> Callable[[Any], bool]:
        terms = [self.conjunction()]
        while self.peek() == ("word", "OR"):
            self.take()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else (lambda r: any(t(r) for t in terms))

    def conjunction(self) -> Callable[[Any], bool]:
        terms = [self.unary()]
        while True:
            token = self.peek()
            if token == ("word", "AND"):
                self.take()
            elif token is None or token in (("paren", ")"), ("word", "OR")):
                break
            terms.append(self.unary())  # adjacency means AND
        return terms[0] if len(terms) == 1 else (lambda r: all(t(r) for t in terms))

    def unary(self) -> Callable[[Any], bool]:
        token = self.peek()
        if token in (("word", "NOT"), ("word", "-")):
            self.take()
            inner = self.unary()
            return lambda r: not inner(r)
        if token == ("paren", "("):
            self.take()
            inner = self.expression()
            if self.take() != ("paren", ")"):
                raise invalid("filter: missing ')'")
            return inner
        return self.comparison()

    def comparison(self) -> Callable[[Any], bool]:
        kind, word = self.take()
        if kind != "word":
            raise invalid(f"filter: expected a field name, got {word!r}")
        if self.peek() == ("paren", "("):
            return self.function(word)
        if self.peek() is None or self.peek()[0] != "op":  # type: ignore[index]
            raise invalid(f"filter: expected an operator after {word!r}")
        op = self.take()[1]
        tests = []
        while True:  # `parent_contexts:"a","b"` (the SDK's form) means any of the values
            value_kind, value = self.take()
            if value_kind not in ("string", "word"):
                raise invalid(f"filter: expected a value after {word} {op}")
            tests.append(_compare(word, op, value, quoted=value_kind == "string"))
            if self.peek() != ("comma", ","):
                break
            self.take()
        return tests[0] if len(tests) == 1 else (lambda r: any(t(r) for t in tests))

    def function(self, name: str) -> Callable[[Any], bool]:
        if name not in self.functions:
            raise invalid(f"filter: unsupported function {name}()")
        self.take()
        args: list[str] = []
        while self.peek() != ("paren", ")"):
            kind, value = self.take()
            if kind == "comma":
                continue
            args.append(value)
        self.take()
        func = self.functions[name]
        return lambda r: func(r, args)


def _lookup(record: Any, path: str) -> list[Any]:
    """Values at a dotted path of a dict record; lists fan out. ``.string_value`` etc. are ignored."""
    values = [record]
    for part in path.split("."):
        found: list[Any] = []
        for value in values:
            if isinstance(value, list):
                value = [v.get(part) if isinstance(v, dict) else None for v in value]
                found.extend(v for v in value if v is not None)
            elif isinstance(value, dict):
                if part in value:
                    found.append(value[part])
            elif part in ("string_value", "number_value", "bool_value"):
                found.append(value)
        values = found
    flat: list[Any] = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    return flat


def _compare(path: str, op: str, raw: str, *, quoted: bool) -> Callable[[Any], bool]:
    def coerce(value: Any) -> tuple[Any, Any]:
        if isinstance(value, bool):
            return value, raw.lower() == "true"
        if isinstance(value, int | float) and not quoted:
            try:
                return float(value), float(raw)
            except ValueError:
                return str(value), raw
        return str(value), raw

    def test(record: Any) -> bool:
        values = _lookup(record, path)
        if op == ":":
            if raw == "*":
                return bool(values)
            return any(raw == str(v) or (isinstance(v, str) and raw in v.split("/")) for v in values)
        if op == "!=":
            return all(coerce(v)[0] != coerce(v)[1] for v in values)
        for value in values:
            left, right = coerce(value)
            try:
                if (
                    (op == "=" and left == right)
                    or (op == "<" and left < right)
                    or (op == ">" and left > right)
                    or (op == "<=" and left <= right)
                    or (op == ">=" and left >= right)
                ):
                    return True
            except TypeError:
                continue
        return False

    return test


def compile_filter(text: str, functions: Functions | None = None) -> Callable[[Any], bool]:
    """A predicate over dict records (``MessageToDict(..., preserving_proto_field_name=True)``) for ``text``."""
    if not text.strip():
        return lambda record: True
    return _Parser(text, functions or {}).parse()

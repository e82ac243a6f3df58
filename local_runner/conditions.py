"""Evaluate the CEL-like trigger conditions the KFP compiler emits for ``dsl.If/Elif/Else`` — without ``eval``.

The compiler writes conditions such as::

    inputs.parameter_values['pipelinechannel--x'] == 'a'
    !(int(inputs.parameter_values['pipelinechannel--n']) > 3) && inputs.parameter_values['pipelinechannel--f'] == true

A tokenizer, a recursive-descent parser and a tree-walking evaluator cover that language (``!``, ``&&``, ``||``,
comparisons, ``int()``/``double()``/``string()``/``bool()``, member access, indexing, literals) and nothing more,
so a condition can never run code.

String literals need care: kfp 2.17 writes a literal as ``'<value>'`` *without escaping it*, so the value
``it's "q"`` arrives as ``'it's "q"'``. A quote therefore closes a literal only where the expression could
continue after it (end of input, ``)``, ``]``, ``,``, or an operator); any other quote belongs to the value.
Backslash escapes are honoured only for ``\\\\`` and the literal's own quote character, so Windows-style paths in
raw values (``C:\\new``) keep their backslashes, while properly escaped CEL (``'it\\'s'``) also works.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ConditionError(ValueError):
    """A condition that cannot be parsed or evaluated (its message quotes the condition)."""


@dataclass(frozen=True)
class Token:
    kind: str  # "str", "num", "ident", or the operator/punctuation text itself
    value: Any
    pos: int


_OPERATORS = ("&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".", ",", "-")
# What may legitimately follow a complete string literal; used to decide whether a quote ends the literal.
_CONTINUATIONS = ("&&", "||", "==", "!=", "<=", ">=", "<", ">", ")", "]", ",", "+", "?", ":")


def _string_ends_at(text: str, index: int) -> bool:
    """Whether the quote at ``index`` can close a string literal (see the module docstring)."""
    rest = text[index + 1 :].lstrip()
    return not rest or rest.startswith(_CONTINUATIONS)


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            chars.append(text[i + 1])
            i += 2
            continue
        if char == quote and _string_ends_at(text, i):
            return "".join(chars), i + 1
        chars.append(char)
        i += 1
    raise ConditionError(f"unterminated string literal starting at column {start + 1}")


def _read_number(text: str, start: int) -> tuple[int | float, int]:
    i = start
    while i < len(text) and (text[i].isdigit() or text[i] in ".eE" or (text[i] in "+-" and text[i - 1] in "eE")):
        i += 1
    literal = text[start:i]
    try:
        return (float(literal) if any(c in literal for c in ".eE") else int(literal)), i
    except ValueError:
        raise ConditionError(f"bad number {literal!r} at column {start + 1}") from None


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens; raises :class:`ConditionError` on anything outside the language."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "'\"":
            value, end = _read_string(text, i)
            tokens.append(Token("str", value, i))
            i = end
        elif char.isdigit():
            number, end = _read_number(text, i)
            tokens.append(Token("num", number, i))
            i = end
        elif char.isalpha() or char == "_":
            end = i
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            tokens.append(Token("ident", text[i:end], i))
            i = end
        else:
            for op in _OPERATORS:
                if text.startswith(op, i):
                    tokens.append(Token(op, op, i))
                    i += len(op)
                    break
            else:
                raise ConditionError(f"unexpected character {char!r} at column {i + 1}")
    tokens.append(Token("end", None, len(text)))
    return tokens


# --- syntax tree ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Member:
    target: Node
    field: str


@dataclass(frozen=True)
class Index:
    target: Node
    key: Node


@dataclass(frozen=True)
class Call:
    function: str
    argument: Node


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


Node = Literal | Name | Member | Index | Call | Unary | Binary

_KEYWORDS = {"true": True, "false": False, "null": None}
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")


class _Parser:
    """Recursive descent: or → and → unary → comparison → postfix → primary."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self, kind: str | None = None) -> Token:
        token = self.tokens[self.pos]
        if kind is not None and token.kind != kind:
            found = "end of condition" if token.kind == "end" else repr(token.value)
            raise ConditionError(f"expected {kind!r} at column {token.pos + 1}, found {found}")
        self.pos += 1
        return token

    def parse(self) -> Node:
        node = self.parse_or()
        self.take("end")
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.peek().kind == "||":
            self.take()
            node = Binary("||", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_unary()
        while self.peek().kind == "&&":
            self.take()
            node = Binary("&&", node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        if self.peek().kind == "!":
            self.take()
            return Unary("!", self.parse_unary())
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        node = self.parse_postfix()
        if self.peek().kind in _COMPARISONS:
            op = self.take().kind
            node = Binary(op, node, self.parse_postfix())
            if self.peek().kind in _COMPARISONS:
                raise ConditionError(f"chained comparison at column {self.peek().pos + 1}; add parentheses")
        return node

    def parse_postfix(self) -> Node:
        node = self.parse_primary()
        while self.peek().kind in (".", "["):
            if self.take().kind == ".":
                node = Member(node, self.take("ident").value)
            else:
                key = self.parse_or()
                self.take("]")
                node = Index(node, key)
        return node

    def parse_primary(self) -> Node:
        token = self.take()
        if token.kind in ("str", "num"):
            return Literal(token.value)
        if token.kind == "-":
            operand = self.parse_primary()
            if isinstance(operand, Literal) and isinstance(operand.value, int | float):
                return Literal(-operand.value)
            return Unary("-", operand)
        if token.kind == "(":
            node = self.parse_or()
            self.take(")")
            return node
        if token.kind == "ident":
            if token.value in _KEYWORDS:
                return Literal(_KEYWORDS[token.value])
            if self.peek().kind == "(":
                self.take("(")
                argument = self.parse_or()
                self.take(")")
                return Call(token.value, argument)
            return Name(token.value)
        found = "end of condition" if token.kind == "end" else repr(token.value)
        raise ConditionError(f"unexpected {found} at column {token.pos + 1}")


def parse(text: str) -> Node:
    """Parse a condition into a syntax tree (raises :class:`ConditionError`)."""
    return _Parser(tokenize(text)).parse()


# --- evaluation ----------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ConditionError("int() of a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)  # CEL truncates toward zero
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ConditionError(f"int() of {value!r}") from None
    raise ConditionError(f"int() of {type(value).__name__}")


def _to_double(value: Any) -> float:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ConditionError(f"double() of {value!r}") from None
    raise ConditionError(f"double() of {type(value).__name__}")


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return str(value)
    raise ConditionError(f"string() of {type(value).__name__}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConditionError(f"bool() of {value!r}")


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "int": _to_int,
    "double": _to_double,
    "string": _to_string,
    "bool": _to_bool,
}


def _compare(op: str, left: Any, right: Any) -> bool:
    if _is_number(left) and _is_number(right):
        pass
    elif type(left) is not type(right) and not (left is None or right is None):
        raise ConditionError(f"cannot compare {type(left).__name__} {left!r} {op} {type(right).__name__} {right!r}")
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if left is None or right is None or isinstance(left, bool | list | dict):
        raise ConditionError(f"ordering comparison {op} is not defined for {left!r} and {right!r}")
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _require_bool(value: Any, op: str) -> bool:
    if not isinstance(value, bool):
        raise ConditionError(f"operator {op} needs a bool, got {value!r}")
    return value


def evaluate_node(node: Node, env: Mapping[str, Any]) -> Any:
    """Evaluate a syntax tree against variables (``inputs`` → ``{'parameter_values': {...}}``)."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        if node.name not in env:
            raise ConditionError(f"unknown name {node.name!r}")
        return env[node.name]
    if isinstance(node, Member):
        target = evaluate_node(node.target, env)
        if not isinstance(target, Mapping) or node.field not in target:
            raise ConditionError(f"no field {node.field!r}")
        return target[node.field]
    if isinstance(node, Index):
        target = evaluate_node(node.target, env)
        key = evaluate_node(node.key, env)
        try:
            return target[key]
        except (KeyError, IndexError, TypeError):
            raise ConditionError(f"no value for [{key!r}] (is the input missing?)") from None
    if isinstance(node, Call):
        function = _FUNCTIONS.get(node.function)
        if function is None:
            raise ConditionError(f"unknown function {node.function}()")
        return function(evaluate_node(node.argument, env))
    if isinstance(node, Unary):
        operand = evaluate_node(node.operand, env)
        if node.op == "!":
            return not _require_bool(operand, "!")
        if not _is_number(operand):
            raise ConditionError(f"unary minus of {operand!r}")
        return -operand
    if node.op in ("&&", "||"):
        left = _require_bool(evaluate_node(node.left, env), node.op)
        if left == (node.op == "||"):  # short-circuit: true || ..., false && ...
            return left
        return _require_bool(evaluate_node(node.right, env), node.op)
    return _compare(node.op, evaluate_node(node.left, env), evaluate_node(node.right, env))


def evaluate_condition(condition: str, parameter_values: Mapping[str, Any]) -> bool:
    """Evaluate a trigger-policy condition against a task's resolved input parameters.

    Raises :class:`ConditionError` (naming the condition) when it cannot be parsed, refers to a missing input,
    compares incompatible types, or does not produce a bool.
    """
    try:
        result = evaluate_node(parse(condition), {"inputs": {"parameter_values": dict(parameter_values)}})
    except ConditionError as exc:
        raise ConditionError(f"condition {condition!r}: {exc}") from None
    if not isinstance(result, bool):
        raise ConditionError(f"condition {condition!r} evaluated to {result!r}, not a bool")
    return result

"""Arithmetic expressions over concept names: the grammar, its parser, and name matching.

An expression such as ``smiling woman - neutral woman + neutral man`` or
``0.5 * (thick seven - seven) + one`` names concepts of the run's concept bank. Each
concept stands for the mean z of its first ``exemplars`` exemplars (3, as the paper); the
expression is a linear combination of those means.

Grammar (names are one or more words; a number directly before a name or "(" multiplies):

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary | implicit)*
    unary  := ("+" | "-") unary | atom
    atom   := NUMBER | NAME | "(" expr ")"
    NAME   := WORD (WORD)*           WORD := [0-9]*[A-Za-z_][A-Za-z0-9_']*

Every problem with an expression raises :class:`ExpressionError` (a ``DcganError``) that
names the column.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
from dataclasses import dataclass, field

from dcgan_cli.core.errors import DcganError

MAX_DEPTH = 64  # nesting of parentheses and signs; deeper is surely a mistake (and would exhaust the stack)
MAX_LENGTH = 10_000

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![A-Za-z0-9_'])
  | (?P<word>[0-9]*[A-Za-z_][A-Za-z0-9_']*)
  | (?P<op>[-+*/()])
    """,
    re.VERBOSE,
)
_WORD = re.compile(r"[0-9]*[A-Za-z_][A-Za-z0-9_']*\Z")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_OP_NAMES = {"+": "'+'", "-": "'-'", "*": "'*'", "/": "'/'", "(": "'('", ")": "')'"}


class ExpressionError(DcganError):
    """A malformed expression, or one naming an unknown concept; ``column`` is 1-based."""

    def __init__(self, message: str, expression: str, column: int):
        self.expression = expression
        self.column = column
        super().__init__(f"{message} (column {column}: {mark_column(expression, column)!r})")


def mark_column(expression: str, column: int, context: int = 60) -> str:
    """The expression with a caret (\u2038) before ``column``, cut to ``context`` characters either side."""
    at = column - 1
    start = max(0, at - context)
    before = ("..." if start > 0 else "") + expression[start:at]
    after = expression[at : at + context] + ("..." if at + context < len(expression) else "")
    return f"{before}\u2038{after}"


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "name", "op", "end"
    text: str
    column: int  # 1-based


def tokenize(expression: str) -> list[Token]:
    """Numbers, operators and names (consecutive words joined by one space), then an end token."""
    if len(expression) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is too long ({len(expression)} characters, at most {MAX_LENGTH})", expression[:200], 1
        )
    tokens: list[Token] = []
    pos = 0
    while pos < len(expression):
        m = _TOKEN.match(expression, pos)
        if m is None:
            ch = expression[pos]
            raise ExpressionError(
                f"unexpected character {ch!r}; use concept names, numbers, + - * / and parentheses", expression, pos + 1
            )
        kind = m.lastgroup
        if kind == "word":
            if tokens and tokens[-1].kind == "name":  # words after words: one multi-word name
                last = tokens.pop()
                tokens.append(Token("name", f"{last.text} {m.group().lower()}", last.column))
            else:
                tokens.append(Token("name", m.group().lower(), pos + 1))
        elif kind != "space":
            tokens.append(Token(kind, m.group(), pos + 1))
        pos = m.end()
    tokens.append(Token("end", "", len(expression) + 1))
    return tokens


# A parsed expression is a number or a linear combination of concepts: name -> coefficient.
@dataclass
class Combination:
    terms: dict[str, float] = field(default_factory=dict)
    columns: dict[str, int] = field(default_factory=dict)  # where each name first appears

    def scaled(self, factor: float) -> Combination:
        return Combination({k: v * factor for k, v in self.terms.items()}, dict(self.columns))

    def plus(self, other: Combination, sign: float) -> Combination:
        terms = dict(self.terms)
        for name, coef in other.terms.items():
            terms[name] = terms.get(name, 0.0) + sign * coef
        columns = dict(other.columns)
        columns.update(self.columns)
        return Combination(terms, columns)


class _Parser:
    def __init__(self, expression: str):
        self.expression = expression
        self.tokens = tokenize(expression)
        self.i = 0
        self.depth = 0

    # -- helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, token: Token | None = None) -> ExpressionError:
        token = token or self.tok
        return ExpressionError(message, self.expression, token.column)

    def describe(self, token: Token) -> str:
        if token.kind == "end":
            return "the end of the expression"
        if token.kind == "op":
            return _OP_NAMES[token.text]
        if token.kind == "number":
            return f"the number {token.text}"
        return f"the name {token.text!r}"

    def finite(self, value, token: Token):
        # Scaling or summing can overflow even when every written number is finite ("a / 1e-320").
        values = value.terms.values() if isinstance(value, Combination) else [value]
        if not all(math.isfinite(v) for v in values):
            raise self.error("a coefficient is too large (not a finite number)", token)
        return value

    # -- grammar
    def parse(self) -> Combination:
        if self.tok.kind == "end":
            raise ExpressionError(
                'the expression is empty; write concept names joined by + and -, e.g. "thick seven - seven + one"',
                self.expression,
                1,
            )
        value = self.expr()
        if self.tok.kind != "end":
            what = "a closing ')' without its '('" if self.tok.text == ")" else self.describe(self.tok)
            raise self.error(f"expected '+', '-', '*' or '/' before {what}")
        if not isinstance(value, Combination):
            raise ExpressionError(
                "the expression is a plain number; it must name at least one concept", self.expression, 1
            )
        return value

    def expr(self) -> float | Combination:
        left = self.term()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self.tok
            self.i += 1
            right = self.term()
            left = self.add(left, right, 1.0 if op.text == "+" else -1.0, op)
        return left

    def add(self, left, right, sign: float, op: Token):
        if isinstance(left, Combination) and isinstance(right, Combination):
            return self.finite(left.plus(right, sign), op)
        if isinstance(left, Combination) or isinstance(right, Combination):
            raise self.error(
                f'cannot {"add" if sign > 0 else "subtract"} a number and a concept; multiply instead, e.g. "0.5 * smiling"',
                op,
            )
        return self.finite(left + sign * right, op)

    def term(self) -> float | Combination:
        left = self.unary()
        while True:
            tok = self.tok
            if tok.kind == "op" and tok.text in "*/":
                self.i += 1
                right = self.unary()
                left = self.multiply(left, right, tok)
            elif isinstance(left, float) and (tok.kind == "name" or (tok.kind == "op" and tok.text == "(")):
                right = self.unary()  # "0.5 smiling", "2 (a - b)": a number before a name or "(" multiplies
                left = self.multiply(left, right, tok, implicit=True)
            elif tok.kind in ("name", "number") or (tok.kind == "op" and tok.text == "("):
                raise self.error(f"expected an operator (+ - * /) before {self.describe(tok)}")
            else:
                return left

    def multiply(self, left, right, op: Token, implicit: bool = False):
        divide = not implicit and op.text == "/"
        if isinstance(left, Combination) and isinstance(right, Combination):
            raise self.error(
                'cannot multiply or divide two concepts; coefficients must be numbers, e.g. "0.5 * smiling"', op
            )
        if divide:
            if isinstance(right, Combination):
                raise self.error('cannot divide by a concept; divide by a number, e.g. "smiling / 2"', op)
            if right == 0:
                raise self.error("division by zero", op)
            return self.finite(left.scaled(1.0 / right) if isinstance(left, Combination) else left / right, op)
        if isinstance(left, Combination):
            return self.finite(left.scaled(right), op)
        if isinstance(right, Combination):
            return self.finite(right.scaled(left), op)
        return self.finite(left * right, op)

    def unary(self) -> float | Combination:
        tok = self.tok
        if tok.kind == "op" and tok.text in "+-":
            self.i += 1
            with self.nested(tok):
                value = self.unary()
            return value if tok.text == "+" else (value.scaled(-1.0) if isinstance(value, Combination) else -value)
        return self.atom()

    def atom(self) -> float | Combination:
        tok = self.tok
        if tok.kind == "number":
            self.i += 1
            return self.finite(float(tok.text), tok)
        if tok.kind == "name":
            self.i += 1
            return Combination({tok.text: 1.0}, {tok.text: tok.column})
        if tok.kind == "op" and tok.text == "(":
            self.i += 1
            with self.nested(tok):
                value = self.expr()
            if self.tok.kind != "op" or self.tok.text != ")":
                raise self.error(
                    f"expected ')' to close the '(' at column {tok.column}, found {self.describe(self.tok)}"
                )
            self.i += 1
            return value
        after = self.tokens[self.i - 1] if self.i > 0 else None
        where = f" after {self.describe(after)}" if after is not None else ""
        raise self.error(f"expected a concept name, a number or '('{where}, found {self.describe(tok)}")

    @contextlib.contextmanager
    def nested(self, token: Token):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the expression is nested too deeply (more than {MAX_DEPTH} levels)", token)
        try:
            yield
        finally:
            self.depth -= 1


def parse_expression(expression: str) -> Combination:
    """The linear combination an expression describes; raises only :class:`ExpressionError`."""
    if not isinstance(expression, str):
        raise ExpressionError("the expression must be text", "", 1)
    return _Parser(expression).parse()


def is_valid_name(name: str) -> bool:
    """True when ``name`` reads back as one concept name in an expression."""
    words = name.split(" ")
    return bool(name) and all(_WORD.match(w) and not _NUMBER.match(w) for w in words)


def normalize_name(name: str) -> str:
    """Lower case, single spaces: the form names take in expressions and in the bank."""
    return " ".join(name.lower().split())


def nearest_names(name: str, known: list[str], n: int = 1) -> list[str]:
    return difflib.get_close_matches(name, known, n=n, cutoff=0.5)


def check_names(combination: Combination, expression: str, known: list[str]) -> None:
    """Every name of the combination is in ``known``; otherwise say which are, and the closest."""
    for name, column in sorted(combination.columns.items(), key=lambda kv: kv[1]):
        if name in known:
            continue
        close = nearest_names(name, known)
        hint = f"did you mean {close[0]!r}? " if close else ""
        listed = ", ".join(sorted(known)[:40]) + (f", ... ({len(known)} in all)" if len(known) > 40 else "")
        raise ExpressionError(
            f"unknown concept {name!r}; {hint}known concepts: {listed} (see `dcgan concepts list`)", expression, column
        )

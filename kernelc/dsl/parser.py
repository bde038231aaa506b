"""Source text to syntax tree: the lark LALR parser, a postlexer for newlines, and syntax errors
that a person who never read the grammar can act on."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Iterator

import lark
from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from kernelc.dsl import ast
from kernelc.errors import KernelSyntaxError, SourcePos

MAX_NESTING = 100


class _NewlinePostLexer:
    """Keep a newline token only where it separates statements: directly inside a kernel body.

    Everywhere else (between kernels, inside parentheses or brackets) newlines are whitespace,
    so a long expression or parameter list may span lines.
    """

    always_accept = ("_NL",)
    _OPEN = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        stack: list[str] = []
        for tok in stream:
            if tok.type == "_NL":
                if stack and stack[-1] == "LBRACE":
                    yield tok
                continue
            if tok.type in self._OPEN:
                stack.append(tok.type)
                if len(stack) > MAX_NESTING:
                    raise KernelSyntaxError(
                        f"brackets nested more than {MAX_NESTING} deep", _tok_pos(tok),
                        hint="bind intermediate values to names instead")
            elif stack and tok.type == self._OPEN[stack[-1]]:
                stack.pop()
            yield tok


def _tok_pos(tok: Token) -> SourcePos:
    return SourcePos(tok.line or 1, tok.column or 1, max(1, len(tok.value)))


def _meta_pos(meta: lark.tree.Meta) -> SourcePos:
    if getattr(meta, "empty", True):
        return SourcePos(1, 1)
    length = meta.end_column - meta.column if meta.end_line == meta.line else 1
    return SourcePos(meta.line, meta.column, max(1, length))


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    grammar = resources.files("kernelc.dsl").joinpath("grammar.lark").read_text()
    # lark caches the analysed grammar (keyed by its text and options) in the temp folder:
    # building the LALR tables costs ~60 ms, loading them ~5 ms.
    return lark.Lark(grammar, parser="lalr", lexer="basic", propagate_positions=True,
                     postlex=_NewlinePostLexer(), maybe_placeholders=True, cache=True)


@v_args(meta=True)
class _ToAst(Transformer):
    """One trivial handler per grammar rule (tests check that every rule has one)."""

    def start(self, meta, kernels):
        return ast.Module(tuple(kernels))

    def kernel(self, meta, children):
        name, *rest = children
        params = tuple(c for c in rest if isinstance(c, ast.ParamDecl))
        outputs = next(c for c in rest if isinstance(c, tuple))
        body = tuple(c for c in rest if isinstance(c, (ast.Assign, ast.Return)))
        end = SourcePos(meta.end_line, max(1, meta.end_column - 1))
        return ast.KernelDef(str(name), params, outputs, body, _tok_pos(name), end)

    def param(self, meta, children):
        name, type_ = children
        return ast.ParamDecl(str(name), type_, _tok_pos(name))

    def single_output(self, meta, children):
        return (children[0],)

    def output_tuple(self, meta, children):
        return tuple(c for c in children if c is not None)

    def type(self, meta, children):
        dtype, *dims = children
        return ast.TypeDecl(str(dtype), tuple(d for d in dims if d is not None), _meta_pos(meta))

    def dim_name(self, meta, children):
        return ast.DimDecl(str(children[0]), _tok_pos(children[0]))

    def dim_number(self, meta, children):
        tok = children[0]
        if not tok.value.isdigit():
            raise KernelSyntaxError(f"a dimension must be a whole number, not {tok.value}", _tok_pos(tok),
                                    hint="write a size such as 3, or a symbol such as D")
        return ast.DimDecl(int(tok.value), _tok_pos(tok))

    def assign(self, meta, children):
        name, value = children
        return ast.Assign(str(name), value, _tok_pos(name))

    def return_(self, meta, children):
        return ast.Return(tuple(c for c in children if c is not None), _meta_pos(meta))

    def _binary(op: str):  # noqa: N805 - a factory evaluated in the class body
        def handler(self, meta, children):
            left, right = children[0], children[-1]
            return ast.Binary(op, left, right, _meta_pos(meta))

        return handler

    or_ = _binary("or")
    and_ = _binary("and")
    add = _binary("+")
    sub = _binary("-")
    mul = _binary("*")
    div = _binary("/")
    power = _binary("**")
    del _binary

    def compare(self, meta, children):
        left, op, right = children
        return ast.Binary(str(op), left, right, _meta_pos(meta))

    def not_(self, meta, children):
        return ast.Unary("not", children[0], _meta_pos(meta))

    def neg(self, meta, children):
        return ast.Unary("-", children[0], _meta_pos(meta))

    def pos(self, meta, children):
        return ast.Unary("+", children[0], _meta_pos(meta))

    def subscript(self, meta, children):
        value, *items = children
        return ast.Subscript(value, tuple(items), _meta_pos(meta))

    def call(self, meta, children):
        func, *args = children
        return ast.Call(func, tuple(a for a in args if a is not None), _meta_pos(meta))

    def slice(self, meta, children):
        start, stop = children
        return ast.SliceItem(start, stop, _meta_pos(meta))

    def number(self, meta, children):
        return ast.Number(str(children[0]), _tok_pos(children[0]))

    def name(self, meta, children):
        return ast.Name(str(children[0]), _tok_pos(children[0]))

    def dtype_name(self, meta, children):
        return ast.DTypeName(str(children[0]), _tok_pos(children[0]))

    def constant(self, meta, children):
        return ast.Constant(str(children[0]), _tok_pos(children[0]))


def grammar_rules() -> set[str]:
    """Every rule name and alias the grammar can put in a tree (for the handler-coverage test)."""
    names: set[str] = set()
    for rule in _lark().rules:
        name = rule.alias or rule.origin.name
        if not str(name).startswith("_") and not rule.options.expand1 or rule.alias:
            names.add(str(name))
    return names


def parse(source: str) -> ast.Module:
    """Parse a source into a syntax tree; every failure is a `KernelSyntaxError` with a position."""
    try:
        tree = _lark().parse(source)
        return _ToAst().transform(tree)
    except KernelSyntaxError:
        raise
    except VisitError as err:
        if isinstance(err.orig_exc, KernelSyntaxError):
            raise err.orig_exc from None
        raise
    except UnexpectedInput as err:
        raise _syntax_error(err, source) from None
    except RecursionError:
        raise KernelSyntaxError("this source is nested too deeply to parse", SourcePos(1, 1),
                                hint="bind intermediate values to names instead of one huge expression") from None


# --- turning lark's errors into messages for people ------------------------------------------

_TERMINAL_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "DTYPE": "a dtype such as f32", "CONSTANT": "a constant",
    "COMP_OP": "a comparison", "_NL": "a new line", "$END": "the end of the source",
    "KERNEL": "'kernel'", "RETURN": "'return'", "AND": "'and'", "OR": "'or'", "NOT": "'not'",
}

_CHAR_HINTS = {
    "^": "use ** for powers, e.g. x**2",
    "&": "use 'and' for logical and",
    "|": "use 'or' for logical or",
    "!": "use 'not' for logical negation (and != for 'not equal')",
    "%": "there is no modulo operator; use floor: a - b * floor(a / b)",
    "@": "use dot(a, b) for dot products",
    "'": "strings are not part of the language",
    '"': "strings are not part of the language",
    "$": "names are letters, digits and underscores",
}


def _describe(term: str) -> str:
    if term in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[term]
    try:
        pattern = _lark().get_terminal(term).pattern
        return f"'{pattern.value}'"
    except KeyError:
        return term.lower()


_OPERATORS = {"'+'", "'-'", "'*'", "'/'", "'**'", "'and'", "'or'", "a comparison"}


def _expected(names: set[str] | frozenset[str]) -> str:
    words = {_describe(n) for n in names}
    if len(words & _OPERATORS) > 2:
        words = (words - _OPERATORS) | {"an operator"}
    words = sorted(words)
    if not words:
        return ""
    if len(words) > 6:
        return ""
    return "expected " + (words[0] if len(words) == 1 else "one of " + ", ".join(words))


def _end_pos(source: str) -> SourcePos:
    lines = source.split("\n")
    return SourcePos(len(lines), len(lines[-1]) + 1)


def _syntax_error(err: UnexpectedInput, source: str) -> KernelSyntaxError:
    if isinstance(err, UnexpectedCharacters):
        char = source[err.pos_in_stream] if err.pos_in_stream < len(source) else "?"
        hint = _CHAR_HINTS.get(char)
        if char == "=" and source[err.pos_in_stream:err.pos_in_stream + 2] != "==":
            hint = "use == to compare"
        shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
        return KernelSyntaxError(f"unexpected character {shown}", SourcePos(err.line, err.column), hint=hint)
    if isinstance(err, UnexpectedToken):
        tok: Token = err.token
        expected = set(err.expected or ())
        if tok.type == "$END":
            pos = _end_pos(source)
            return KernelSyntaxError(f"the source ends too early; {_expected(expected)}", pos,
                                     hint=_eof_hint(expected))
        text = tok.value if tok.type != "_NL" else "end of line"
        message = f"unexpected {text!r}" if tok.type != "_NL" else "unexpected end of line"
        exp = _expected(expected)
        return KernelSyntaxError(f"{message}; {exp}" if exp else message, _tok_pos(tok),
                                 hint=_token_hint(tok, expected))
    return KernelSyntaxError(str(err).splitlines()[0], SourcePos(getattr(err, "line", 1) or 1,
                                                                getattr(err, "column", 1) or 1))


def _eof_hint(expected: set[str]) -> str | None:
    if "RBRACE" in expected:
        return "close the kernel body with }"
    if "RPAR" in expected:
        return "a parenthesis is not closed"
    if "RSQB" in expected:
        return "a bracket is not closed"
    return None


def _token_hint(tok: Token, expected: set[str]) -> str | None:
    if tok.type == "EQUAL":
        return "use == to compare; = only binds a name at the start of a statement"
    if tok.type == "COMP_OP":
        return "comparisons do not chain; write (a < b) and (b < c)"
    if tok.type == "KERNEL":
        return "a kernel is not closed with } before the next one begins"
    if tok.type in ("NAME", "NUMBER", "CONSTANT", "DTYPE", "LPAR") and ("_NL" in expected or "SEMICOLON" in expected):
        return "two expressions in a row: is an operator missing, or should a new statement start here?"
    if tok.type == "_NL" and "RBRACE" not in expected:
        return "the expression is unfinished at the end of the line"
    if tok.type == "RETURN":
        return "return starts a statement: put it on its own line or after ;"
    if "MINUS" in expected and "NAME" in expected:
        return "an operand is missing here"
    if tok.type == "LBRACE":
        return "declare the output type after ->, e.g. -> f32[i]"
    return None

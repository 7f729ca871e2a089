"""Vector arithmetic on z (paper, section 6.3 and fig. 7): expressions, vectors, figures.

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

import torch

from dcgan_cli.errors import DcganError
from dcgan_cli.latent import rescale_to_norm, typical_norm

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
        raise ExpressionError(f"expression is too long ({len(expression)} characters, at most {MAX_LENGTH})", expression[:200], 1)
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
                "the expression is empty; write concept names joined by + and -, e.g. \"thick seven - seven + one\"",
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
                f"cannot {'add' if sign > 0 else 'subtract'} a number and a concept; multiply instead, e.g. \"0.5 * smiling\"",
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
                "cannot multiply or divide two concepts; coefficients must be numbers, e.g. \"0.5 * smiling\"", op
            )
        if divide:
            if isinstance(right, Combination):
                raise self.error("cannot divide by a concept; divide by a number, e.g. \"smiling / 2\"", op)
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
                raise self.error(f"expected ')' to close the '(' at column {tok.column}, found {self.describe(self.tok)}")
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


# ---------------------------------------------------------------------------- vectors


@dataclass
class ArithmeticResult:
    """The vectors of one expression."""

    expression: str
    terms: dict[str, float]  # concept -> coefficient, in order of appearance, zeros dropped
    exemplars: dict[str, torch.Tensor]  # concept -> (K, nz) exemplars used
    means: dict[str, torch.Tensor]  # concept -> (nz,) mean z
    raw: torch.Tensor  # (nz,) the combination of the means
    result: torch.Tensor  # (nz,) after rescaling (== raw without it)
    variants: torch.Tensor  # (V, nz) result + uniform noise
    rescaled: bool
    target_norm: float | None

    def to_json(self) -> dict:
        return {
            "expression": self.expression,
            "terms": self.terms,
            "rescaled": self.rescaled,
            "target_norm": self.target_norm,
            "raw_norm": float(self.raw.norm()),
            "concepts": {
                name: {"exemplars": len(self.exemplars[name]), "mean": self.means[name].tolist(), "mean_norm": float(self.means[name].norm())}
                for name in self.terms
            },
            "result": self.result.tolist(),
            "variants": self.variants.tolist(),
        }


def evaluate(
    expression: str,
    concepts: dict[str, torch.Tensor],
    *,
    exemplars: int = 3,
    prior: str = "normal",
    rescale: bool | None = None,
    noise: float = 0.25,
    variants: int = 8,
    seed: int = 0,
) -> ArithmeticResult:
    """Parse ``expression`` and combine the mean z of each concept's first ``exemplars`` exemplars.

    ``concepts`` maps names to (K, nz) exemplar z, best first. ``rescale`` (default: on for a
    normal prior) moves the result, and each mean, to the prior's typical norm: a mean of a
    few draws is shorter than a draw, and sums of means drift off the shell the generator
    was trained on. ``variants`` copies get uniform noise in [-noise, noise] per dimension
    (the paper's 8 samples at scale 0.25).
    """
    from dcgan_cli.latent import derive_seed

    combination = parse_expression(expression)
    check_names(combination, expression, list(concepts))
    terms = {name: coef for name, coef in combination.terms.items() if coef != 0.0}
    if not terms:
        raise ExpressionError("the concepts cancel out: every coefficient is zero", expression, 1)
    if exemplars < 1:
        raise DcganError(f"--exemplars must be at least 1, got {exemplars}")
    if variants < 0 or noise < 0:
        raise DcganError("--variants and --noise must not be negative")
    rescale = (prior == "normal") if rescale is None else rescale
    target = typical_norm(next(iter(concepts.values())).shape[1], prior) if rescale else None
    used = {name: concepts[name][:exemplars].float() for name in terms}
    means = {name: z.mean(dim=0) for name, z in used.items()}
    raw = sum(coef * means[name] for name, coef in terms.items())
    result = raw
    if rescale:
        if float(raw.norm()) < 1e-6:
            raise ExpressionError("the expression comes out as the zero vector, which has no direction to rescale", expression, 1)
        result = rescale_to_norm(raw, target)
        means = {name: rescale_to_norm(m, target) if float(m.norm()) > 1e-6 else m for name, m in means.items()}
    g = torch.Generator().manual_seed(derive_seed(seed, "arithmetic-noise"))
    noise_z = (torch.rand(variants, raw.shape[0], generator=g) * 2 - 1) * noise
    return ArithmeticResult(expression, terms, used, means, raw, result, result + noise_z, rescale, target)


def parse_sweep(text: str) -> tuple[float, float, int]:
    """"A:B:N" -> (A, B, N): N coefficients from A to B."""
    parts = text.split(":")
    try:
        a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise DcganError(f"--sweep {text!r}: write START:STOP:COUNT, e.g. --sweep -2:2:9") from None
    if not (math.isfinite(a) and math.isfinite(b)) or n < 2 or n > 64:
        raise DcganError(f"--sweep {text!r}: START and STOP must be numbers and COUNT between 2 and 64")
    return a, b, n


def sweep_vectors(bases: torch.Tensor, direction: torch.Tensor, start: float, stop: float, count: int) -> torch.Tensor:
    """(R, nz) bases + t * direction for ``count`` t from start to stop: (R, count, nz)."""
    t = torch.linspace(start, stop, count)
    return bases[:, None, :] + t[None, :, None] * direction[None, None, :]


# ---------------------------------------------------------------------------- figures (paper, fig. 7)

MIN_TILE = 64  # small images are enlarged (nearest neighbour) to at least this many pixels
EXEMPLARS_PER_ROW = 5
PAD = 4  # between tiles
GAP = 12  # between exemplars and their mean image
MARGIN = 12
OPERATOR_WIDTH = 36
FONT_SIZE = 14
OPERATOR_FONT_SIZE = 28


def _font(size: int = FONT_SIZE):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only its small bitmap font
        return ImageFont.load_default()


def _text_size(text: str, font) -> tuple[int, int]:
    from PIL import Image, ImageDraw

    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    return right - left, bottom


def tile_size(image_size: int) -> int:
    return image_size * max(1, -(-MIN_TILE // image_size))


@dataclass(frozen=True)
class FigureTile:
    role: str  # "exemplar", "mean", "result" or "variant"
    concept: str | None  # the concept of an exemplar or mean tile
    index: int  # exemplar number, or variant number (the result is 0)
    box: tuple[int, int, int, int]  # left, top, right, bottom (exclusive)


@dataclass
class FigureLayout:
    """Where everything of an arithmetic figure goes: tiles, labels, operators, title."""

    width: int
    height: int
    tile: int
    tiles: list[FigureTile]
    texts: list[tuple[tuple[int, int], str, int]]  # (left, top), text, font size

    def find(self, role: str, concept: str | None = None) -> list[FigureTile]:
        return [t for t in self.tiles if t.role == role and (concept is None or t.concept == concept)]


def _coefficient_label(name: str, coef: float) -> str:
    magnitude = abs(coef)
    return name if math.isclose(magnitude, 1.0) else f"{magnitude:g} \u00b7 {name}"  # the default font has no \u00d7


def result_grid_shape(variants: int) -> tuple[int, int, int]:
    """(columns, rows, position of the unnoised result): 8 variants make the paper's 3x3 with the result in the middle."""
    n = variants + 1
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    centre = (rows // 2) * cols + cols // 2 if n == cols * rows and cols % 2 == 1 and rows % 2 == 1 else 0
    return cols, rows, centre


def layout_figure(terms: dict[str, float], exemplar_counts: dict[str, int], variants: int, image_size: int, title: str) -> FigureLayout:
    """The fig. 7 layout: for each concept its exemplars in a row with their mean image below,
    the operators between concepts, then "=" and the result among its noisy variants."""
    font, big = _font(), _font(OPERATOR_FONT_SIZE)
    t = tile_size(image_size)
    tiles: list[FigureTile] = []
    texts: list[tuple[tuple[int, int], str, int]] = []
    title_w, title_h = _text_size(title, font)
    label_h = _text_size("Ag", font)[1]
    top = MARGIN + title_h + MARGIN  # labels start here
    grid_top = top + label_h + PAD
    max_rows = max(math.ceil(k / EXEMPLARS_PER_ROW) for k in exemplar_counts.values())
    exemplars_h = max_rows * t + (max_rows - 1) * PAD
    mean_top = grid_top + exemplars_h + GAP
    operator_y = mean_top + t // 2 - _text_size("+", big)[1] * 2 // 3
    x = MARGIN
    for i, (name, coef) in enumerate(terms.items()):
        if i > 0 or coef < 0:
            sign = "-" if coef < 0 else "+"
            w, _ = _text_size(sign, big)
            texts.append(((x + (OPERATOR_WIDTH - w) // 2, operator_y), sign, OPERATOR_FONT_SIZE))
            x += OPERATOR_WIDTH
        k = exemplar_counts[name]
        cols = min(k, EXEMPLARS_PER_ROW)
        grid_w = cols * t + (cols - 1) * PAD
        label = _coefficient_label(name, coef)
        label_w, _ = _text_size(label, font)
        block_w = max(grid_w, label_w, t)
        texts.append(((x + (block_w - label_w) // 2, top), label, FONT_SIZE))
        gx = x + (block_w - grid_w) // 2
        for j in range(k):
            r, c = divmod(j, EXEMPLARS_PER_ROW)
            left, upper = gx + c * (t + PAD), grid_top + r * (t + PAD)
            tiles.append(FigureTile("exemplar", name, j, (left, upper, left + t, upper + t)))
        mx = x + (block_w - t) // 2
        tiles.append(FigureTile("mean", name, 0, (mx, mean_top, mx + t, mean_top + t)))
        x += block_w
    w, _ = _text_size("=", big)
    texts.append(((x + (OPERATOR_WIDTH - w) // 2, operator_y), "=", OPERATOR_FONT_SIZE))
    x += OPERATOR_WIDTH
    cols, rows, centre = result_grid_shape(variants)
    grid_w = cols * t + (cols - 1) * PAD
    label = "result" if variants == 0 else f"result and {variants} noisy variants"
    label_w, _ = _text_size(label, font)
    block_w = max(grid_w, label_w)
    texts.append(((x + (block_w - label_w) // 2, top), label, FONT_SIZE))
    gx = x + (block_w - grid_w) // 2
    order = [centre] + [p for p in range(variants + 1) if p != centre]
    for number, position in enumerate(order):
        r, c = divmod(position, cols)
        left, upper = gx + c * (t + PAD), grid_top + r * (t + PAD)
        tiles.append(FigureTile("result" if number == 0 else "variant", None, number, (left, upper, left + t, upper + t)))
    x += block_w
    bottom = max(tile.box[3] for tile in tiles)
    texts.insert(0, ((MARGIN, MARGIN), title, FONT_SIZE))
    return FigureLayout(max(x, MARGIN + title_w) + MARGIN, bottom + MARGIN, t, tiles, texts)


def render_layout(layout: FigureLayout, images: dict[tuple[str, str | None, int], torch.Tensor]):
    """A PIL RGB picture: each tile's (C, H, W) image in [-1, 1] enlarged into its box, the texts in black."""
    from PIL import Image, ImageDraw

    from dcgan_cli.images import image_from_tensor

    canvas = Image.new("RGB", (layout.width, layout.height), "white")
    for tile in layout.tiles:
        picture = image_from_tensor(images[(tile.role, tile.concept, tile.index)]).convert("RGB")
        canvas.paste(picture.resize((layout.tile, layout.tile), Image.NEAREST), tile.box[:2])
    draw = ImageDraw.Draw(canvas)
    for (left, upper), text, size in layout.texts:
        draw.text((left, upper), text, fill="black", font=_font(size))
    return canvas


def describe_settings(result: ArithmeticResult, noise: float) -> str:
    k = {len(z) for z in result.exemplars.values()}
    per = f"{k.pop()} exemplars" if len(k) == 1 else "up to " + str(max(len(z) for z in result.exemplars.values())) + " exemplars"
    norm = f", rescaled to norm {result.target_norm:.1f}" if result.rescaled else ", not rescaled"
    return f"{result.expression}   (mean of {per}{norm}; noise U(\u00b1{noise:g}))"


def arithmetic_figure(result: ArithmeticResult, engine, noise: float):
    """(picture, layout, images by tile) of an evaluated expression, drawn by ``engine``."""
    zs: list[torch.Tensor] = []
    keys: list[tuple[str, str | None, int]] = []
    for name in result.terms:
        for j, z in enumerate(result.exemplars[name]):
            zs.append(z)
            keys.append(("exemplar", name, j))
        zs.append(result.means[name])
        keys.append(("mean", name, 0))
    zs.append(result.result)
    keys.append(("result", None, 0))
    for v, z in enumerate(result.variants, start=1):
        zs.append(z)
        keys.append(("variant", None, v))
    generated = engine.generate(torch.stack(zs).float())
    images = dict(zip(keys, generated))
    layout = layout_figure(
        result.terms, {n: len(z) for n, z in result.exemplars.items()}, len(result.variants), engine.config.size, describe_settings(result, noise)
    )
    return render_layout(layout, images), layout, images


def sweep_figure(frames: torch.Tensor, coefficients: list[float], title: str):
    """Rows of images along a direction, under a title and the coefficient of each column."""
    from PIL import Image, ImageDraw

    from dcgan_cli.images import image_from_tensor

    rows, count = frames.shape[:2]
    t = tile_size(frames.shape[-1])
    font = _font()
    title_w, title_h = _text_size(title, font)
    label_h = _text_size("0", font)[1]
    grid_top = MARGIN + title_h + MARGIN + label_h + PAD
    width = max(2 * MARGIN + count * t + (count - 1) * PAD, 2 * MARGIN + title_w)
    canvas = Image.new("RGB", (width, grid_top + rows * t + (rows - 1) * PAD + MARGIN), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN), title, fill="black", font=font)
    for c, coef in enumerate(coefficients):
        left = MARGIN + c * (t + PAD)
        text = f"{coef:+.2g}"
        draw.text((left + (t - _text_size(text, font)[0]) // 2, grid_top - PAD - label_h), text, fill="black", font=font)
        for r in range(rows):
            picture = image_from_tensor(frames[r, c]).convert("RGB").resize((t, t), Image.NEAREST)
            canvas.paste(picture, (left, grid_top + r * (t + PAD)))
    return canvas

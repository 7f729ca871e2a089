"""Figures of vector arithmetic, laid out like the paper's fig. 7, and of sweeps along a direction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dcgan_cli.latent.arithmetic import ArithmeticResult

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


def layout_figure(
    terms: dict[str, float], exemplar_counts: dict[str, int], variants: int, image_size: int, title: str
) -> FigureLayout:
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
        tiles.append(
            FigureTile("result" if number == 0 else "variant", None, number, (left, upper, left + t, upper + t))
        )
    x += block_w
    bottom = max(tile.box[3] for tile in tiles)
    texts.insert(0, ((MARGIN, MARGIN), title, FONT_SIZE))
    return FigureLayout(max(x, MARGIN + title_w) + MARGIN, bottom + MARGIN, t, tiles, texts)


def render_layout(layout: FigureLayout, images: dict[tuple[str, str | None, int], torch.Tensor]):
    """A PIL RGB picture: each tile's (C, H, W) image in [-1, 1] enlarged into its box, the texts in black."""
    from PIL import Image, ImageDraw

    from dcgan_cli.core.images import image_from_tensor

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
    per = (
        f"{k.pop()} exemplars"
        if len(k) == 1
        else "up to " + str(max(len(z) for z in result.exemplars.values())) + " exemplars"
    )
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
        result.terms,
        {n: len(z) for n, z in result.exemplars.items()},
        len(result.variants),
        engine.config.size,
        describe_settings(result, noise),
    )
    return render_layout(layout, images), layout, images


def sweep_figure(frames: torch.Tensor, coefficients: list[float], title: str):
    """Rows of images along a direction, under a title and the coefficient of each column."""
    from PIL import Image, ImageDraw

    from dcgan_cli.core.images import image_from_tensor

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
        draw.text(
            (left + (t - _text_size(text, font)[0]) // 2, grid_top - PAD - label_h), text, fill="black", font=font
        )
        for r in range(rows):
            picture = image_from_tensor(frames[r, c]).convert("RGB").resize((t, t), Image.NEAREST)
            canvas.paste(picture, (left, grid_top + r * (t + PAD)))
    return canvas

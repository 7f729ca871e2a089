"""The `scenes` dataset: procedurally drawn bedrooms with the boxes of their windows.

It stands in for LSUN bedrooms (which cannot be downloaded everywhere) in the paper's
"forgetting to draw windows" experiment (section 6.3.1), so the whole experiment can run
and be measured on any machine. Each picture is a room seen from the foot of the bed:
a warm back wall, an optional side wall, a wooden floor, a bed (headboard, pillow,
mattress, blanket) and 0 to 3 windows of varied size and place, under varied light.

Windows are drawn to be learnable at 32x32 in a few CPU minutes and findable by colour
and shape: bright sky-blue panes (blue clearly above red, a hue nothing else in the room
has) inside a one-pixel frame, sometimes split by a cross of glazing bars.

Every picture is drawn at its own size (no resampling), so window boxes are exact pixel
rectangles. Picture ``i`` of a seed depends only on (seed, i).
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from dcgan_cli.core.errors import DcganError

SCENE_SIZES = (32, 64)
DEFAULT_COUNT = 4096
WINDOW_COUNT_PROBS = (0.15, 0.35, 0.3, 0.2)  # 0, 1, 2 or 3 windows

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels; x1 and y1 exclusive (image[y0:y1, x0:x1])


def _hsv(
    rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]
) -> np.ndarray:
    """An RGB colour in [0, 1] drawn from ranges of hue (degrees), saturation and value."""
    return np.array(colorsys.hsv_to_rgb(rng.uniform(*h) / 360.0, rng.uniform(*s), rng.uniform(*v)), dtype=np.float32)


def _overlaps(a: Box, b: Box, margin: int) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


@functools.cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates in [0, 1), (size, size) each; read-only, shared."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (size, size, 3) float32 in [0, 1]
    windows: list[Box]


def draw_scene(size: int, rng: np.random.Generator) -> Scene:
    """One room: (size, size, 3) RGB in [0, 1] and the box of each window (frame included)."""
    if size not in SCENE_SIZES:
        raise DcganError(
            f"scenes are drawn at {' or '.join(map(str, SCENE_SIZES))} pixels, not {size}; pass --size 32 or 64"
        )
    u = size // 32  # pixels per unit of the 32-pixel layout
    ys, xs = _grid(size)
    img = np.empty((size, size, 3), np.float32)

    # Back wall: warm paint (beige, peach, ochre, terracotta), a little darker near the ceiling.
    wall = _hsv(rng, (15, 45), (0.25, 0.6), (0.62, 0.88))
    img[:] = wall * (0.9 + 0.1 * ys)[..., None]

    # Floor: wooden boards from the horizon down, darker far away.
    horizon = int(round(size * rng.uniform(0.62, 0.74)))
    floor = _hsv(rng, (18, 35), (0.45, 0.7), (0.3, 0.5))
    floor_rows = slice(horizon, size)
    img[floor_rows] = floor * (0.8 + 0.35 * ys[floor_rows])[..., None]
    board = max(2, 3 * u)
    img[horizon:, :][(np.arange(horizon, size) - horizon) % board == board - 1] *= 0.85

    # Side wall (half the rooms): a darker shade of the paint on the left or the right,
    # its foot running diagonally down to the picture's corner.
    wall_left, wall_right = 0, size
    if rng.random() < 0.5:
        width = int(round(size * rng.uniform(0.1, 0.2)))
        depth = np.clip((width - (xs * size)) / width, 0, 1)  # 1 at the picture's edge, 0 at the corner
        if rng.random() < 0.5:
            wall_left = width
        else:
            depth = depth[:, ::-1]
            wall_right = size - width
        side = (depth > 0) & (ys * size < horizon + depth * (size - horizon))
        img[side] = (wall * rng.uniform(0.65, 0.8))[None, :] * (0.95 + 0.1 * ys[side])[:, None]

    # The bed, against the back wall: headboard, then mattress and blanket reaching towards us.
    bed_w = int(round(size * rng.uniform(0.38, 0.6)))
    bed_x0 = int(rng.integers(wall_left, max(wall_left + 1, wall_right - bed_w + 1)))
    bed_x1 = min(bed_x0 + bed_w, wall_right)
    head_top = horizon - int(round(size * rng.uniform(0.12, 0.2)))
    wood = _hsv(rng, (15, 30), (0.5, 0.75), (0.18, 0.35))
    img[head_top : horizon + u, bed_x0:bed_x1] = wood
    mattress_top = horizon - 2 * u
    sheet = _hsv(rng, (30, 50), (0.02, 0.12), (0.85, 0.97))
    img[mattress_top:size, bed_x0 + u : bed_x1 - u] = sheet
    pillow_w = max(2 * u, (bed_x1 - bed_x0) // 3)
    img[mattress_top - u : mattress_top + 2 * u, bed_x0 + 2 * u : bed_x0 + 2 * u + pillow_w] = sheet * 1.03
    blanket_hue = (330, 375) if rng.random() < 0.6 else (70, 140)  # reds and oranges, or greens: never blue
    blanket = _hsv(rng, blanket_hue, (0.45, 0.75), (0.45, 0.75))
    blanket_top = mattress_top + int(round((size - mattress_top) * rng.uniform(0.3, 0.5)))
    img[blanket_top:size, bed_x0 + u : bed_x1 - u] = blanket
    img[blanket_top, bed_x0 + u : bed_x1 - u] *= 1.15  # the turned-down edge catches the light
    headboard: Box = (bed_x0, head_top, bed_x1, size)

    # Windows on the back wall, clear of the bed, the side wall and each other.
    windows: list[Box] = []
    frame = _hsv(rng, (30, 45), (0.0, 0.12), (0.88, 1.0)) if rng.random() < 0.7 else wood * 1.2
    for _ in range(int(rng.choice(len(WINDOW_COUNT_PROBS), p=WINDOW_COUNT_PROBS))):
        for attempt in range(30):
            # Later attempts try smaller windows, so a crowded wall still takes a third one.
            w = int(rng.integers(6, max(8, 13 - attempt // 3))) * u
            h = int(rng.integers(7, max(9, 14 - attempt // 3))) * u
            x0 = int(rng.integers(wall_left + u, max(wall_left + u + 1, wall_right - w - u + 1)))
            y0 = int(rng.integers(u, max(u + 1, horizon - h - 2 * u + 1)))
            box = (x0, y0, x0 + w, y0 + h)
            if box[2] > wall_right - u or box[3] > horizon - u:
                continue
            if _overlaps(box, headboard, u) or any(_overlaps(box, other, 2 * u) for other in windows):
                continue
            windows.append(box)
            _draw_window(img, box, u, frame, rng)
            break

    # Light: overall brightness and a glow from one side; the same factor on every channel,
    # so colours keep their hue. Then a little sensor noise.
    light = rng.uniform(0.75, 1.1) * (1 + rng.uniform(-0.25, 0.25) * (xs - 0.5))
    img *= light[..., None]
    img += rng.normal(0, 0.012, img.shape).astype(np.float32)
    return Scene(np.clip(img, 0, 1), windows)


def _draw_window(img: np.ndarray, box: Box, u: int, frame: np.ndarray, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = frame
    sky = _hsv(rng, (192, 212), (0.45, 0.7), (0.88, 1.0))
    rows = np.linspace(0.9, 1.08, y1 - y0 - 2 * u, dtype=np.float32)  # the sky pales towards the horizon
    img[y0 + u : y1 - u, x0 + u : x1 - u] = np.clip(sky[None, None, :] * rows[:, None, None], 0, 1)
    if rng.random() < 0.6:  # glazing bars: a cross in the frame's colour, where the panes stay wide enough
        if x1 - x0 >= 9 * u:
            mid = (x0 + x1) // 2
            img[y0:y1, mid - u // 2 : mid - u // 2 + u] = frame
        if y1 - y0 >= 10 * u:
            mid = (y0 + y1) // 2
            img[mid - u // 2 : mid - u // 2 + u, x0:x1] = frame


class SceneImages(Dataset):
    """``count`` rooms at ``size`` pixels, deterministic for ``seed``; ``.boxes[i]`` lists the
    window boxes of image ``i`` as (x0, y0, x1, y1) pixels, x1 and y1 exclusive.

    Items are images (3, size, size) in [-1, 1], like every dataset; they are held as
    uint8 (12 MiB per 4,096 images at 32x32) and scaled per batch.
    """

    def __init__(self, count: int = DEFAULT_COUNT, size: int = 32, seed: int = 0):
        if count < 1:
            raise DcganError(f"scenes: count must be at least 1, got {count}")
        self.size, self.seed = size, seed
        pixels = np.empty((count, size, size, 3), np.uint8)
        self.boxes: list[list[Box]] = []
        for i in range(count):
            scene = draw_scene(size, np.random.default_rng([seed, i]))
            pixels[i] = np.round(scene.image * 255)
            self.boxes.append(scene.windows)
        self.pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # (N, 3, size, size) uint8

    def __len__(self) -> int:
        return self.pixels.shape[0]

    @staticmethod
    def _scale(pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float().div_(127.5).sub_(1.0)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._scale(self.pixels[index])

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self._scale(self.pixels[torch.as_tensor(indices)])

    def images(self, indices=None) -> torch.Tensor:
        """Images (N, 3, size, size) in [-1, 1]; all of them without ``indices``."""
        return self._scale(self.pixels if indices is None else self.pixels[torch.as_tensor(indices)])


def scene_dataset(size: int, channels: int) -> SceneImages:
    """The `scenes` dataset at ``size`` (32 or 64), refusing what scenes cannot be."""
    if channels != 3:
        raise DcganError("scenes are colour pictures (windows are found by their colour); drop --channels or pass 3")
    if size not in SCENE_SIZES:
        raise DcganError(f"scenes are drawn at 32 or 64 pixels, not {size}; pass --size 32 or 64")
    return SceneImages(DEFAULT_COUNT, size, seed=0)

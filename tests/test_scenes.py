"""The `scenes` dataset (procedural bedrooms with window boxes) and the `windows` detector."""

import numpy as np
import pytest
import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.data.catalog import DataOptions
from dcgan_cli.data.loading import load_dataset
from dcgan_cli.data.scenes import SceneImages
from dcgan_cli.latent.detectors import (
    boxes_mask,
    get_detectors,
    match_boxes,
    run_detector,
)
from dcgan_cli.latent.window_detector import WindowDetector


def sky_pixels(pixels: torch.Tensor) -> np.ndarray:
    """(N, H, W) bool from uint8 (N, 3, H, W): sky blue, a colour only window panes have."""
    r, g, b = (pixels[:, c].int().numpy() for c in range(3))
    return (b - r >= 40) & (b >= g - 12)


@pytest.mark.parametrize("size,count", [(32, 300), (64, 60)])
def test_boxes_match_the_pixels(size, count):
    data = SceneImages(count, size, seed=11)
    frame = size // 32
    sky = sky_pixels(data.pixels)
    n_windows = [len(b) for b in data.boxes]
    assert set(n_windows) == {0, 1, 2, 3}, "rooms have 0 to 3 windows"
    for i, boxes in enumerate(data.boxes):
        inside = boxes_mask(boxes, size, size)
        # Sky shows through windows only: not one sky pixel outside the boxes...
        assert not (sky[i] & ~inside).any(), f"image {i}: sky outside its window boxes {boxes}"
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            box = sky[i, y0:y1, x0:x1]
            # ...the frame (the box's outer ring) is not sky, and the panes within it mostly are.
            ring = np.ones_like(box)
            ring[frame:-frame, frame:-frame] = False
            assert not box[ring].any(), f"image {i}: box {(x0, y0, x1, y1)} is not tight around its frame"
            assert box[~ring].mean() > 0.6, f"image {i}: box {(x0, y0, x1, y1)} holds too little sky"
        for a in range(len(boxes)):  # windows never overlap
            for b in range(a + 1, len(boxes)):
                assert not (boxes_mask([boxes[a]], size, size) & boxes_mask([boxes[b]], size, size)).any()


def test_scenes_are_deterministic_and_varied():
    a, b = SceneImages(12, 32, seed=4), SceneImages(12, 32, seed=4)
    assert torch.equal(a.pixels, b.pixels) and a.boxes == b.boxes
    longer = SceneImages(20, 32, seed=4)
    assert torch.equal(longer.pixels[:12], a.pixels) and longer.boxes[:12] == a.boxes  # image i depends on (seed, i)
    assert not torch.equal(SceneImages(12, 32, seed=5).pixels, a.pixels)
    brightness = SceneImages(200, 32, seed=4).images().mean(dim=(1, 2, 3))
    assert brightness.std() > 0.05, "lighting varies from room to room"


def test_scenes_is_a_registered_dataset(cli):
    data, options = load_dataset("scenes", DataOptions())
    assert (options.size, options.channels) == (32, 3)
    batch = data.__getitems__([0, 5, 9])
    assert batch.shape == (3, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1
    assert torch.equal(batch[1], data[5])
    assert len(data.boxes) == len(data)
    with pytest.raises(DcganError, match="colour pictures"):
        load_dataset("scenes", DataOptions(channels=1))
    with pytest.raises(DcganError, match="32 or 64"):
        load_dataset("scenes", DataOptions(size=128))
    listing = cli(["datasets", "--json"])
    assert listing.exit_code == 0 and "scenes" in listing.stdout


@pytest.mark.parametrize("size,count", [(32, 400), (64, 80)])
def test_windows_detector_finds_the_true_windows(size, count):
    data = SceneImages(count, size, seed=2024)
    detector = get_detectors()["windows"]
    assert isinstance(detector, WindowDetector)
    found = run_detector(detector, data.images(), "windows")
    hits, n_found, n_true = match_boxes(found, data.boxes, min_iou=0.5)
    precision, recall = hits / n_found, hits / n_true
    print(f"windows detector at {size}x{size}: {n_true} true windows, precision {precision:.3f}, recall {recall:.3f}")
    assert n_true > count  # enough windows for the figures to mean something
    assert precision > 0.9 and recall > 0.9


def test_windows_detector_needs_colour():
    with pytest.raises(DcganError, match="colour images"):
        WindowDetector().detect(torch.zeros(2, 1, 32, 32))

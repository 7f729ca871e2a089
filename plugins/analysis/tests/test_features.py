import numpy as np
import pytest
import torch

from dcgan_analysis.data import RealImages, dataset_targets, load_all
from dcgan_analysis.features import (
    DiscriminatorFeatures,
    FeatureCache,
    PixelFeatures,
    cached_features,
    check_layers,
    feature_layout,
    pooled_features,
)
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.model import DCGANConfig, Discriminator, init_weights
from dcgan_cli.data.loading import TensorImages


def random_net(size: int, channels: int = 1, ndf: int = 8) -> Discriminator:
    net = Discriminator(DCGANConfig(size=size, channels=channels, ndf=ndf))
    init_weights(net, torch.Generator().manual_seed(0))
    return net.eval()


def max_over_cells(fmap: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C*grid*grid): the maximum of each of grid x grid equal cells, by hand."""
    n, c, h, w = fmap.shape
    cells = fmap.reshape(n, c, grid, h // grid, grid, w // grid)
    return cells.amax(dim=(3, 5)).reshape(n, -1)


@pytest.mark.parametrize("size,widths,sides", [(32, [8, 16, 32], [16, 8, 4]), (64, [8, 16, 32, 64], [32, 16, 8, 4])])
def test_every_layer_is_max_pooled_to_4x4_and_concatenated_in_order(size, widths, sides):
    net = random_net(size)
    x = torch.rand(3, 1, size, size) * 2 - 1
    features = pooled_features(net, x)
    assert features.shape == (3, sum(w * 16 for w in widths))
    layout = feature_layout(net.config)
    assert [entry["shape"] for entry in layout] == [[w, s, s] for w, s in zip(widths, sides)]
    assert [entry["features"] for entry in layout] == [w * 16 for w in widths]
    # Each layer's block of the vector is that layer's map, max-pooled over a 4x4 grid of cells.
    with torch.no_grad():
        maps = net.features(x)
        start = 0
        for fmap, width in zip(maps, widths):
            block = features[:, start : start + width * 16]
            assert torch.equal(block, max_over_cells(fmap, 4))
            start += width * 16


def test_chosen_layers_and_grid():
    net = random_net(32)
    x = torch.rand(2, 1, 32, 32)
    only_last = pooled_features(net, x, layers=(2,))
    assert only_last.shape == (2, 32 * 16)
    assert torch.equal(only_last, pooled_features(net, x)[:, -32 * 16 :])
    assert pooled_features(net, x, grid=1, layers=(0, 2), pool="avg").shape == (2, 8 + 32)
    assert check_layers(net.config, (3, 1)) == (0, 2)
    assert check_layers(net.config, None) is None
    with pytest.raises(DcganError, match="conv layers 1..3"):
        check_layers(net.config, (4,))


def test_trained_and_random_extractors_share_shape_and_name_their_weights(run_dir):
    trained = DiscriminatorFeatures.trained(run_dir)
    random = DiscriminatorFeatures.random(trained.net.config, seed=5)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    a, b = trained(x), random(x)
    assert a.shape == b.shape == (4, (32 + 64 + 128) * 16)
    assert not torch.allclose(a, b)
    assert "sha256" in trained.describe() and "seed 5" in random.describe()
    assert trained.cache_key() != random.cache_key()
    # The same seed gives the same random discriminator.
    assert torch.equal(DiscriminatorFeatures.random(trained.net.config, seed=5)(x), b)


def _real(images, targets=None, name="toy"):
    from dcgan_cli.data.catalog import DataOptions

    return RealImages(name, DataOptions(size=images.shape[-1], channels=images.shape[1]), TensorImages(images, targets))


def test_features_are_cached_per_extractor_and_reused(tmp_path):
    images = torch.rand(40, 1, 32, 32) * 2 - 1
    real = _real(images, torch.arange(40) % 4)
    cache = FeatureCache(tmp_path / "cache")
    net_a, net_b = random_net(32), random_net(32)
    init_weights(net_b, torch.Generator().manual_seed(1))
    a = DiscriminatorFeatures(net_a, label="a", weights={"sha256": "aaa", "file": "a"})
    extractors = {"a": a, "pixels": PixelFeatures()}
    first = cached_features(cache, real, extractors, batch_size=16, device="cpu")
    assert first.cached == () and first.features["a"].shape == (40, 56 * 16)
    assert torch.equal(first.labels, torch.arange(40) % 4)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    again = cached_features(cache, real, extractors, batch_size=16, device="cpu")
    assert set(again.cached) == {"a", "pixels"}
    assert torch.equal(again.features["a"], first.features["a"]) and torch.equal(again.labels, first.labels)
    # Other weights are another key: extracted, not taken from a's file.
    b = DiscriminatorFeatures(net_b, label="b", weights={"sha256": "bbb", "file": "b"})
    other = cached_features(cache, real, {"b": b}, batch_size=16, device="cpu")
    assert other.cached == () and not torch.allclose(other.features["b"], first.features["a"])
    # A subset is its own entry, and its rows are the subset's.
    subset = cached_features(cache, real, {"pixels": PixelFeatures()}, indices=np.array([3, 7]), device="cpu")
    assert subset.cached == () and torch.equal(subset.features["pixels"], images[[3, 7]].reshape(2, -1))


def test_labels_come_from_targets_or_from_image_label_items():
    from torchvision.datasets import FakeData
    from torchvision.transforms import v2

    transform = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
    tuples = FakeData(size=12, image_size=(1, 32, 32), num_classes=3, transform=transform)
    assert dataset_targets(tuples) is None
    batch = load_all(tuples, batch_size=5)
    assert batch.images.shape == (12, 1, 32, 32)
    assert batch.labels.tolist() == [int(tuples[i][1]) for i in range(12)]

    with_targets = TensorImages(torch.zeros(6, 1, 32, 32), torch.tensor([2, 1, 0, 2, 1, 0]))
    assert load_all(with_targets, np.array([5, 0])).labels.tolist() == [0, 2]
    assert load_all(TensorImages(torch.zeros(3, 1, 32, 32))).labels is None


def test_unreadable_items_are_skipped_and_labels_stay_aligned():
    class Flaky(torch.utils.data.Dataset):
        targets = [0, 1, 2, 3, 4]

        def __len__(self):
            return 5

        def __getitem__(self, i):
            return None if i == 2 else (torch.full((1, 32, 32), float(i)), self.targets[i])

    batch = load_all(Flaky(), batch_size=2)
    assert batch.skipped == 1
    assert batch.indices.tolist() == [0, 1, 3, 4] and batch.labels.tolist() == [0, 1, 3, 4]
    assert batch.images[:, 0, 0, 0].tolist() == [0.0, 1.0, 3.0, 4.0]

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan_analysis.guided import (
    GuidedLeakyReLU,
    guided_backprop,
    guided_copy,
    strongest_features,
)
from dcgan_analysis.neighbours import memorisation, nearest
from dcgan_cli.api import ExitCode
from dcgan_cli.core.networks import load_discriminator


def test_guided_rule_passes_positive_gradients_through_positive_inputs_only():
    x = torch.tensor([-1.0, 2.0, 3.0, -4.0], requires_grad=True)
    y = GuidedLeakyReLU(0.2)(x)
    assert torch.allclose(y, torch.nn.functional.leaky_relu(x.detach(), 0.2))  # forward unchanged
    y.backward(torch.tensor([1.0, 1.0, -1.0, -1.0]))
    assert x.grad.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_guided_backprop_gives_per_image_maps_and_differs_from_the_plain_gradient(run_dir):
    net = load_discriminator(run_dir)
    guided = guided_copy(net)
    assert not any(isinstance(m, torch.nn.LeakyReLU) for m in guided.modules())
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in net.modules())  # the original is untouched
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    batch = guided_backprop(guided, images, layer=2, channel=5)
    one = guided_backprop(guided, images[1:2], layer=2, channel=5)
    assert batch.shape == (3, 1, 32, 32) and torch.allclose(batch[1:2], one, atol=1e-6)  # images do not mix
    x = images[:1].clone().requires_grad_(True)
    net.eval().features(x)[2][0, 5].max().backward()
    assert not torch.allclose(x.grad, one)


def test_strongest_features_are_ranked_and_their_top_images_chosen(run_dir):
    net = load_discriminator(run_dir)
    images = torch.rand(20, 1, 32, 32) * 2 - 1
    maps = strongest_features(net, images, layer=-1, features=3, per_feature=4)
    assert maps.layer == 2 and len(maps.channels) == 3
    assert maps.strength == sorted(maps.strength, reverse=True)
    with torch.no_grad():
        responses = net.features(images)[2].amax(dim=(2, 3))
    assert torch.argsort(responses.mean(0), descending=True)[:3].tolist() == maps.channels
    for channel, rows, values in zip(maps.channels, maps.image_rows, maps.responses):
        assert rows == torch.argsort(responses[:, channel], descending=True)[:4].tolist()
        assert values == pytest.approx(responses[rows, channel].tolist())
    assert maps.saliency.shape == (3, 4, 1, 32, 32) and maps.saliency.abs().sum() > 0


def test_inspect_command_writes_the_figure_and_refuses_to_overwrite(run_dir, cli):
    result = cli(["inspect", "-r", run_dir, "--features", "3", "--per-feature", "4", "--images", "64"])
    assert result.exit_code == 0, result.output
    png, meta = run_dir / "analysis" / "inspect-001.png", run_dir / "analysis" / "inspect-001.json"
    report = json.loads(meta.read_text())
    for name in ("trained", "random"):
        assert report[name]["layer"] == 3 and len(report[name]["channels"]) == 3
        assert all(len(rows) == 4 for rows in report[name]["dataset_indices"])
    assert "sha256" in report["trained"]["description"] and "random init" in report["random"]["description"]
    with Image.open(png) as figure:
        # Two panels of 3 rows x 4 columns of 32x32 tiles (2 px padding), doubled, plus titles.
        assert figure.width > 2 * 2 * (4 * 34) and figure.height > 2 * (3 * 34)
    assert cli(["inspect", "-r", run_dir, "--images", "32"]).exit_code == 0
    assert (run_dir / "analysis" / "inspect-002.png").is_file()
    refused = cli(["inspect", "-r", run_dir, "--out", png])
    assert refused.exit_code == ExitCode.BAD_INPUT and "--force" in refused.stderr
    bad = cli(["inspect", "-r", run_dir, "--layer", "9"])
    assert bad.exit_code == ExitCode.BAD_INPUT and "conv layers 1..3" in bad.stderr


def test_memorisation_score_flags_copies_and_passes_fresh_draws():
    rng = np.random.default_rng(0)
    reference = torch.from_numpy(rng.normal(size=(400, 10)))
    heldout = torch.from_numpy(rng.normal(size=(200, 10)))
    fresh = torch.from_numpy(rng.normal(size=(200, 10)))
    copies = reference[:200] + 0.01 * torch.from_numpy(rng.normal(size=(200, 10)))
    healthy = memorisation("toy", fresh, heldout, reference)
    copying = memorisation("toy", copies, heldout, reference)
    assert healthy.close_fraction < 0.15 and 0.8 < healthy.median_ratio < 1.25
    assert "no sign" in healthy.verdict()
    assert copying.close_fraction > 0.95 and copying.median_ratio < 0.1
    assert "possible memorisation" in copying.verdict()
    assert copying.summary()["samples_closer_p_value"] < 1e-6


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(1)
    query, reference = torch.from_numpy(rng.normal(size=(7, 5))), torch.from_numpy(rng.normal(size=(30, 5)))
    distances, indices = nearest(query, reference, k=3, chunk=3)
    brute = torch.cdist(query, reference)
    assert torch.equal(indices, torch.argsort(brute, dim=1)[:, :3])
    assert torch.allclose(distances.double(), torch.sort(brute, dim=1).values[:, :3], atol=1e-5)


def test_neighbours_command_writes_grid_and_memorisation_score(run_dir, cli):
    result = cli(["neighbours", "-r", run_dir, "-n", "4", "--neighbours", "3", "--score-samples", "150"])
    assert result.exit_code == 0, result.output
    assert "pixels: median nearest distance" in result.stdout
    report = json.loads((run_dir / "analysis" / "neighbours-001.json").read_text())
    assert np.array(report["nearest_by_pixels"]).shape == (4, 3) == np.array(report["nearest_by_features"]).shape
    assert report["reference_images"] + report["heldout_images"] == 1797
    spaces = [score["space"] for score in report["memorisation"]]
    assert spaces[0] == "pixels" and spaces[1].startswith("trained discriminator")
    for score in report["memorisation"]:
        assert score["samples"] == 150 and score["heldout"] == report["heldout_images"]
        assert 0 <= score["close_fraction"] <= 1 and score["median_ratio"] > 0
    with Image.open(run_dir / "analysis" / "neighbours-001.png") as figure:
        assert figure.height > 2 * 4 * 34  # 4 rows of doubled 32x32 tiles
    # A fixed seed gives the same samples and so the same neighbours.
    again = json.loads(
        cli(["neighbours", "-r", run_dir, "-n", "4", "--neighbours", "3", "--score-samples", "150", "--json"]).stdout
    )
    assert again["nearest_by_pixels"] == report["nearest_by_pixels"]

import json

import numpy as np
import pytest
import torch

from dcgan_analysis.data import RealImages
from dcgan_analysis.fid import (
    ClassifierFeatures,
    ClassifierSetup,
    ExtractorContext,
    InceptionFeatures,
    choose_extractor,
    frechet_distance,
    kernel_inception_distance,
)
from dcgan_cli.api import ExitCode
from dcgan_cli.core.errors import DcganError
from dcgan_cli.data.catalog import DataOptions
from dcgan_cli.data.loading import load_digits_images


def gaussian_features(n: int, d: int, seed: int) -> np.ndarray:
    """n draws of one correlated Gaussian in d dimensions (the same for every seed)."""
    mixing = np.random.default_rng(99).normal(size=(d, d)) / np.sqrt(d)
    return np.random.default_rng(seed).normal(size=(n, d)) @ mixing


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift():
    x = gaussian_features(2000, 16, seed=0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    # Shifting every feature by 0.5 moves only the means: FID = 16 * 0.5^2 = 4 exactly.
    assert frechet_distance(x, x + 0.5) == pytest.approx(4.0, rel=1e-6)
    assert frechet_distance(x, x[::-1]) == pytest.approx(0.0, abs=1e-8)  # order does not matter
    # Another draw of the same distribution is close (finite-sample noise only); a stretched one is not.
    other_draw = frechet_distance(x, gaussian_features(2000, 16, seed=1))
    assert 0 < other_draw < 0.1
    assert frechet_distance(x, 2 * gaussian_features(2000, 16, seed=1)) > 20 * other_draw


def test_fid_matches_the_textbook_formula_with_scipy_sqrtm():
    from scipy.linalg import sqrtm

    a, b = gaussian_features(300, 6, seed=1), gaussian_features(400, 6, seed=2) + 0.3
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)


def test_kid_is_about_zero_for_one_distribution_and_clearly_positive_for_a_shift():
    x, y = gaussian_features(600, 16, seed=3), gaussian_features(600, 16, seed=4)
    same_mean, same_std = kernel_inception_distance(x, y, subsets=20, subset_size=300)
    shifted_mean, shifted_std = kernel_inception_distance(x, y + 0.5, subsets=20, subset_size=300)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert shifted_mean > 10 * max(abs(same_mean), same_std)
    with pytest.raises(DcganError, match="at least 2"):
        kernel_inception_distance(x[:1], y)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """torchvision's inception_v3 architecture with random weights, saved the way users save theirs."""
    from safetensors.torch import save_file
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path_factory.mktemp("weights") / "inception_v3.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_inception_extractor_loads_safetensors_and_gives_pool_features(inception_file):
    extractor = InceptionFeatures(inception_file)
    features = extractor(torch.rand(2, 1, 32, 32) * 2 - 1)  # grey 32x32, resized to 299 and repeated to RGB
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    assert "InceptionV3" in extractor.describe() and inception_file.name in extractor.describe()


def test_inception_extractor_refuses_hostile_pickles_foreign_weights_and_missing_files(tmp_path, inception_file):
    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'ran')!r}, 'w').close()",))

    hostile = tmp_path / "inception.pth"
    torch.save({"fc.weight": torch.zeros(2), "x": Payload()}, hostile)
    with pytest.raises(DcganError, match="never unpickles"):
        InceptionFeatures(hostile)
    assert not (tmp_path / "ran").exists()
    from safetensors.torch import save_file

    foreign = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3)}, str(foreign))
    with pytest.raises(DcganError, match="does not hold torchvision's inception_v3 ImageNet weights"):
        InceptionFeatures(foreign)
    with pytest.raises(DcganError, match="does not exist"):
        InceptionFeatures(tmp_path / "absent.safetensors")


def test_classifier_extractor_trains_once_and_is_cached(tmp_path):
    from dcgan_cli.data.loading import TensorImages

    digits = load_digits_images(32, 1)
    real = RealImages(
        "digits", DataOptions(size=32, channels=1), TensorImages(digits.images[:900], digits.targets[:900])
    )
    context = ExtractorContext(tmp_path, real, "cpu", None, tmp_path / "cache", seed=0)
    setup = ClassifierSetup(epochs=3, width=16)
    first = ClassifierFeatures.create(context, setup)
    assert first.accuracy > 0.7  # far above chance (0.1): a feature space that knows the classes
    assert "held-out accuracy" in first.describe()
    features = first(real.dataset.images[:5])
    assert features.shape == (5, 128)
    assert len(list((tmp_path / "cache").glob("classifier-digits-*.safetensors"))) == 1
    again = ClassifierFeatures.create(context, setup)  # from the cache: same weights, no training
    assert again.accuracy == first.accuracy and torch.equal(again(real.dataset.images[:5]), features)


def test_auto_extractor_and_unknown_names(run_dir):
    real = RealImages("digits", DataOptions(size=32, channels=1), load_digits_images(32, 1))
    context = ExtractorContext(run_dir, real, "cpu")
    with pytest.raises(DcganError, match="unknown feature extractor 'nope'"):
        choose_extractor("nope", context)
    with pytest.raises(DcganError, match="needs --inception-weights"):
        choose_extractor("inception", context)
    d = choose_extractor("discriminator", context)
    assert d(torch.zeros(3, 1, 32, 32)).shape == (3, 128)  # the last conv layer, averaged over space
    assert "trained discriminator" in d.describe()


def test_fid_command_names_its_extractor_and_writes_numbered_json(run_dir, cli):
    args = [
        "fid",
        "-r",
        run_dir,
        "--dataset",
        "digits",
        "--extractor",
        "discriminator",
        "-n",
        "300",
        "--max-real",
        "400",
        "--kid-subsets",
        "10",
        "--kid-subset-size",
        "100",
    ]
    result = cli(args)
    assert result.exit_code == 0, result.output
    assert "extractor: trained discriminator" in result.stdout and "FID" in result.stdout
    report = json.loads((run_dir / "analysis" / "fid-001.json").read_text())
    assert report["extractor"] == "discriminator" and report["dims"] == 128
    assert report["samples"] == 300 and report["real"] == 400
    assert report["fid"] > 0 and np.isfinite(report["kid_mean"]) and report["real_split_fid"] >= 0
    again = cli([*args, "--json"])
    second = json.loads(again.stdout)
    assert second["features_from_cache"] and second["fid"] == pytest.approx(report["fid"])
    assert (run_dir / "analysis" / "fid-002.json").is_file()

    missing = cli(
        [
            "fid",
            "-r",
            run_dir,
            "--dataset",
            "digits",
            "--extractor",
            "inception",
            "--inception-weights",
            "nope.safetensors",
        ]
    )
    assert (
        missing.exit_code == ExitCode.BAD_INPUT
        and "does not exist" in missing.stderr
        and "Traceback" not in missing.output
    )

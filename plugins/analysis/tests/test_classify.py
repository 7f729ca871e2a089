import json

import numpy as np
import pytest

import dcgan_cli
from dcgan_analysis.classify import C_GRID, draw_labelled, run_protocol, split_rows
from dcgan_cli.api import ExitCode
from dcgan_cli.core.errors import DcganError


def blobs(n_per_class: int, classes: int, dims: int, spread: float, seed: int):
    """Gaussian clusters around random centres: separable when spread is small."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims))
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), dims)), labels


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(5), 40)
    split = split_rows(labels, 0.2, 0.25, seed=3)
    parts = [split.pool, split.validation, split.test]
    assert sum(len(p) for p in parts) == 200 and len(np.unique(np.concatenate(parts))) == 200
    assert len(split.test) == 40 and len(split.validation) == 50
    for part in parts:
        assert np.all(np.bincount(labels[part]) == len(part) // 5)  # every class in its share
    again = split_rows(labels, 0.2, 0.25, seed=3)
    assert np.array_equal(again.test, split.test)
    assert not np.array_equal(split_rows(labels, 0.2, 0.25, seed=4).test, split.test)


def test_draws_take_k_labels_per_class_from_the_pool_only():
    labels = np.repeat(np.arange(3), 20)
    pool = np.arange(0, 60, 2)
    rows = draw_labelled(labels, pool, 4, np.random.default_rng(0))
    assert len(rows) == 12 and set(rows) <= set(pool)
    assert np.all(np.bincount(labels[rows]) == 4)
    with pytest.raises(DcganError, match="only 10 images in the training pool"):
        draw_labelled(labels, pool, 11, np.random.default_rng(0))


def test_protocol_ranks_informative_features_above_noise_with_paired_draws():
    x, labels = blobs(60, 4, 20, spread=0.6, seed=0)
    noise = np.random.default_rng(1).normal(size=(len(labels), 20))
    sets = {"blobs": ("separable clusters", x), "noise": ("pure noise", noise)}
    result = run_protocol(sets, labels, labels_per_class=5, draws=6, seed=0, test_fraction=0.2, val_fraction=0.2)
    good, bad = result.row("blobs"), result.row("noise")
    assert len(good.accuracies) == len(bad.accuracies) == 6
    assert good.mean > 0.9 and abs(bad.mean - 0.25) < 0.15  # noise stays near chance (4 classes)
    assert set(good.chosen_c) <= set(C_GRID)
    assert result.split == {"pool": 144, "validation": 48, "test": 48}
    comparison = result.comparison("blobs", "noise")
    assert comparison["intervals_separate"] and comparison["wins"] == 6
    assert comparison["mean_difference"] == pytest.approx(good.mean - bad.mean)
    # The same seed repeats every draw exactly; the mean +- 1.96 std is what it says.
    again = run_protocol(sets, labels, labels_per_class=5, draws=6, seed=0, test_fraction=0.2, val_fraction=0.2)
    assert again.row("blobs").accuracies == good.accuracies
    assert good.ci95 == pytest.approx(1.96 * np.std(good.accuracies))


def test_validation_split_chooses_c():
    # Noisy, overlapping classes: a huge C overfits 5 labels per class, so the choice matters
    # and must be the best-scoring C on the validation split.
    from dcgan_analysis.classify import fit_l2svm

    x, labels = blobs(80, 3, 50, spread=2.0, seed=2)
    split = split_rows(labels, 0.2, 0.3, seed=0)
    rows = draw_labelled(labels, split.pool, 5, np.random.default_rng(0))
    model, c, accuracy = fit_l2svm(x[rows], labels[rows], x[split.validation], labels[split.validation])
    from sklearn.svm import LinearSVC

    scores = {
        cc: LinearSVC(C=cc, dual="auto", max_iter=2000, random_state=0)
        .fit(x[rows], labels[rows])
        .score(x[split.validation], labels[split.validation])
        for cc in C_GRID
    }
    assert accuracy == pytest.approx(max(scores.values())) and scores[c] == accuracy


def test_classify_command_writes_numbered_results_and_caches_features(run_dir, cli):
    args = ["classify", "-r", run_dir, "--labels-per-class", "5", "--draws", "2", "--max-images", "500"]
    result = cli(args)
    assert result.exit_code == 0, result.output
    for name in ("trained discriminator", "random discriminator", "raw pixels"):
        assert name in result.stdout
    report = json.loads((run_dir / "analysis" / "classify-001.json").read_text())
    assert [row["name"] for row in report["rows"]] == ["trained discriminator", "random discriminator", "raw pixels"]
    assert [row["dims"] for row in report["rows"]] == [3584, 3584, 1024]
    assert [entry["features"] for entry in report["layout"]] == [512, 1024, 2048]
    assert report["images"] == 500 and report["features_from_cache"] == []
    assert all(len(row["accuracies"]) == 2 and 0.5 < row["mean"] <= 1 for row in report["rows"])
    assert {c["baseline"] for c in report["comparisons"]} == {"random discriminator", "raw pixels"}

    again = cli([*args[:-4], "--draws", "1", *args[-2:], "--json"])
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert sorted(second["features_from_cache"]) == ["random discriminator", "raw pixels", "trained discriminator"]
    for first_row, second_row in zip(report["rows"], second["rows"]):  # same seed, same features: same first draw
        assert second_row["accuracies"] == first_row["accuracies"][:1]
    assert (run_dir / "analysis" / "classify-002.json").is_file()

    refused = cli([*args, "--out", run_dir / "analysis" / "classify-001.json"])
    assert refused.exit_code == ExitCode.BAD_INPUT and "--force" in refused.stderr


def test_classify_refuses_unlabelled_images_and_bad_layers(run_dir, cli, registered):
    import torch

    from dcgan_cli.data.loading import TensorImages

    class Unlabelled:
        @dcgan_cli.hookimpl
        def dcgan_register_datasets(self, register):
            register(
                "blank",
                lambda options: TensorImages(torch.zeros(30, options.channels, options.size, options.size)),
                size=32,
                channels=1,
            )

    registered(Unlabelled(), "unlabelled-test-dataset")
    result = cli(["classify", "-r", run_dir, "--dataset", "blank", "--no-cache"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "dataset 'blank' has no labels" in result.stderr and "Traceback" not in result.output
    result = cli(["classify", "-r", run_dir, "--layers", "1,7"])
    assert result.exit_code == ExitCode.BAD_INPUT and "conv layers 1..3" in result.stderr
    assert not (run_dir / "analysis").exists() or not list((run_dir / "analysis").glob("classify-*.json"))

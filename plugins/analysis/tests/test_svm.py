"""The kernel L2-SVM solves LinearSVC's problem: same optimum, coefficients, intercepts and predictions."""

import warnings

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from dcgan_analysis import svm
from dcgan_analysis.classify import fit_l2svm, fit_l2svm_liblinear


def blobs(n_per_class: int, d: int, classes: int, seed: int, noise: float = 1.0):
    """Non-negative, correlated clusters, like pooled LeakyReLU activations, at unit mean norm."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * 0.3
    x = np.concatenate([c + noise * rng.normal(size=(n_per_class, d)) for c in centres]).astype(np.float32)
    x = np.abs(x)
    x /= np.linalg.norm(x, axis=1).mean()
    return x, np.repeat(np.arange(classes), n_per_class)


def reference(x, y, C):
    """LinearSVC converged far beyond its default tolerance."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LinearSVC(C=C, dual=False, tol=1e-12, max_iter=100000).fit(x, y)


def primal(model, x, y, C):
    """LinearSVC's objective summed over its one-vs-rest problems: 1/2 (|w|^2 + b^2) + C sum sqhinge."""
    classes = np.unique(y)
    total = 0.0
    for j in range(model.coef_.shape[0]):
        positive = classes[1] if model.coef_.shape[0] == 1 else classes[j]
        t = np.where(y == positive, 1.0, -1.0)
        w, b = model.coef_[j].astype(np.float64), float(model.intercept_[j])
        margin = t * (x.astype(np.float64) @ w + b)
        total += 0.5 * (w @ w + b * b) + C * (np.maximum(0, 1 - margin) ** 2).sum()
    return total


@pytest.mark.parametrize("classes", [2, 3, 10])
@pytest.mark.parametrize("n_per_class,d", [(5, 300), (30, 500), (60, 40)], ids=["n<<d", "n<d", "n>d"])
def test_kernel_solver_matches_liblinear(classes, n_per_class, d):
    x, y = blobs(n_per_class, d, classes, seed=classes * 100 + d)
    models = svm.fit_path(x, y, svm.C_GRID)
    for C, model in zip(svm.C_GRID, models):
        ref = reference(x, y, C)
        assert model.coef_.shape == ref.coef_.shape and model.intercept_.shape == ref.intercept_.shape
        assert (model.classes_ == ref.classes_).all()
        ours, theirs = primal(model, x, y, C), primal(ref, x, y, C)
        assert abs(ours - theirs) / theirs < 1e-6, C  # the same optimum
        if len(x) < d:  # strictly convex in the span: the solution itself is unique
            scale = np.abs(ref.coef_).max()
            assert np.abs(model.coef_ - ref.coef_).max() / scale < 1e-4, C
            assert np.abs(model.intercept_ - ref.intercept_).max() / max(1.0, np.abs(ref.intercept_).max()) < 1e-4, C
        assert (model.predict(x) == ref.predict(x)).mean() >= 0.99


def test_any_label_values_and_grid_order():
    x, y = blobs(20, 200, 3, seed=7)
    y = np.array([5, 9, 11])[y]
    grid = (100.0, 0.01, 1.0)  # solved ascending, returned in the order given
    for C, model in zip(grid, svm.fit_path(x, y, grid)):
        ref = reference(x, y, C)
        assert set(model.predict(x)) <= {5, 9, 11}
        assert np.abs(model.coef_ - ref.coef_).max() / np.abs(ref.coef_).max() < 1e-4, C


def test_a_slice_of_a_pool_gram_gives_the_same_models():
    x, y = blobs(15, 100, 3, seed=1)
    pool_gram = svm.gram(x)
    rows = np.arange(0, len(x), 2)
    sliced = svm.fit_path(x[rows], y[rows], K=pool_gram[np.ix_(rows, rows)])
    direct = svm.fit_path(x[rows], y[rows])
    for a, b in zip(sliced, direct):
        np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-5, atol=1e-7)


def test_fit_l2svm_picks_the_first_best_c_like_the_reference():
    x, y = blobs(20, 200, 4, seed=3)
    x_val, y_val = blobs(20, 200, 4, seed=4, noise=1.5)
    model, c, accuracy = fit_l2svm(x, y, x_val, y_val, solver="kernel")
    accuracies = [m.score(x_val, y_val) for m in svm.fit_path(x, y)]
    best = int(np.argmax(accuracies))
    assert accuracy == max(accuracies) and c == svm.C_GRID[best]
    ref_model, ref_C, ref_accuracy = fit_l2svm_liblinear(x, y, x_val, y_val)
    assert (c, accuracy) == (ref_C, ref_accuracy)
    assert (model.predict(x_val) == ref_model.predict(x_val)).mean() >= 0.99


def test_auto_uses_liblinear_where_samples_outnumber_features():
    x, y = blobs(60, 40, 3, seed=5)
    model, _, _ = fit_l2svm(x, y, x, y)
    assert type(model).__name__ == "LinearSVC"
    model, _, _ = fit_l2svm(x[:, :30].repeat(4, axis=1)[:90], y[:90], x[:, :30].repeat(4, axis=1), y)
    assert isinstance(model, svm.LinearModel)  # 90 samples, 120 features


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least two classes"):
        svm.fit_path(np.ones((4, 10), np.float32), np.zeros(4))


def test_the_protocol_on_real_mnist_gives_the_same_results_with_either_solver():
    """Real digits (the bundled mnist5k, pixels at 32x32): the same draws, the same C, the same test accuracy."""
    import torch

    from dcgan_analysis.classify import run_protocol
    from dcgan_cli.api import DataOptions, load_dataset

    real, _ = load_dataset("mnist5k", DataOptions())
    rows = np.arange(0, len(real), 4)  # 1,250 digits, 125 of each
    pixels = torch.stack([real[int(i)][0] for i in rows]).flatten(1).numpy()
    labels = real.targets.numpy()[rows]
    sets = {"pixels": ("raw pixels", pixels)}
    new = run_protocol(sets, labels, labels_per_class=10, draws=3, seed=0)
    old = run_protocol(sets, labels, labels_per_class=10, draws=3, seed=0, solver="liblinear")
    assert new.row("pixels").chosen_c == old.row("pixels").chosen_c
    assert new.row("pixels").accuracies == pytest.approx(old.row("pixels").accuracies, abs=2 / 625)
    assert new.row("pixels").mean > 0.6  # real digits from 10 labels each: far above chance

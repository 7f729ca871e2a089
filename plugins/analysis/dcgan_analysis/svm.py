"""An exact linear L2-SVM (squared hinge, L2 penalty, one-vs-rest) for few samples in many dimensions.

It solves the problem scikit-learn's ``LinearSVC(loss="squared_hinge", penalty="l2")``
solves (intercept_scaling 1), for each class against the rest:

    min_w,b  1/2 (|w|^2 + b^2) + C sum_i max(0, 1 - y_i (w.x_i + b))^2

(liblinear regularises the intercept too: it is the weight of a constant feature equal
to 1), but in the n-dimensional span of the n training rows rather than in the d feature
dimensions, which pays when n << d, as in the paper's few-label protocol. By the
representer theorem w = sum_i beta_i x_i and b = sum_i beta_i, so only the Gram matrix
K = X X^T + 1 (n x n) is needed. With lam = 1/(2C),

    min_beta  lam beta^T K beta + sum_i max(0, 1 - y_i (K beta)_i)^2

is a convex piecewise quadratic, minimised by Chapelle's primal Newton method ("Training a
support vector machine in the primal", Neural Computation 2007): with A the samples inside
the margin, the Newton point is beta_A = (K_AA + lam I)^-1 y_A, 0 elsewhere; an exact line
search keeps it monotone, and it stops when A no longer changes, at the exact optimum (up
to the linear solve), not at a tolerance. A few Cholesky solves per class and C, fewer when
warm-started from the previous C of the ascending grid.

K is computed once (float32: the only O(n^2 d) step) and every C and class reuses it; the
n x n algebra is float64 (at C = 100, lam = 0.005 against K's largest eigenvalue ~0.7 n:
float32 would lose the coefficients). Where n >= d, use LinearSVC (classify.fit_l2svm does).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg
from scipy.linalg import blas, lapack

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
ONE_THREAD_BELOW = 2000  # n x n work on smaller n runs on one BLAS thread (see single_threaded)


@dataclass
class LinearModel:
    """A linear one-vs-rest classifier: coef_ (k, d) and intercept_ (k,), k = 1 for two classes (as LinearSVC)."""

    classes_: np.ndarray
    coef_: np.ndarray
    intercept_: np.ndarray

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        scores = np.asarray(x, dtype=np.float32) @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, x: np.ndarray) -> np.ndarray:
        return predict_from_scores(self.classes_, self.decision_function(x))

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())


def predict_from_scores(classes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Class of each row: (N,) scores of one classifier whose positive class is classes[1], or (N, k) argmax."""
    if scores.ndim == 1 or scores.shape[1] == 1:
        return classes[(scores.reshape(-1) > 0).astype(int)]
    return classes[scores.argmax(axis=1)]


def gram(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """K = X X^T + 1 as float64, the product itself in float32 (the one O(n^2 d) step)."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return (xt @ xt.T).double().numpy() + 1.0


def single_threaded(n: int):
    """One BLAS/OpenMP thread for the n x n work when n is small.

    On a small shared machine, threaded BLAS spins at barriers while another process holds
    a core: measured 4-10x slower at n = 1,000 on 2 cores. The limit must be set after
    scipy.linalg is imported (scipy ships its own OpenBLAS), as it is in this module.
    """
    import contextlib

    from threadpoolctl import threadpool_limits

    return threadpool_limits(1) if n < ONE_THREAD_BELOW else contextlib.nullcontext()


def one_vs_rest_targets(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(classes, Y) with Y (n, k) in {-1, +1}; k = 1 (positive = classes[1]) for two classes."""
    classes, codes = np.unique(np.asarray(y), return_inverse=True)
    if len(classes) < 2:
        raise ValueError("an SVM needs at least two classes")
    if len(classes) == 2:
        return classes, np.where(codes == 1, 1.0, -1.0)[:, None]
    return classes, np.where(codes[:, None] == np.arange(len(classes))[None, :], 1.0, -1.0)


def _line_search(lam: float, beta: np.ndarray, d: np.ndarray, kb: np.ndarray, kd: np.ndarray, y: np.ndarray) -> float:
    """The exact minimiser t > 0 of the objective along beta + t d.

    Its derivative, 2 lam (beta.Kd + t d.Kd) - 2 sum_{slack_i(t) > 0} y_i (Kd)_i slack_i(t) with
    slack_i(t) = 1 - y_i (Kb)_i - t y_i (Kd)_i, is piecewise linear and increasing: a safeguarded
    1-D Newton finds its root. t = 1 (the Newton point) is the usual answer.
    """
    bkd, dkd = float(beta @ kd), float(d @ kd)
    yo, yq = y * kb, y * kd

    def slope(t):
        slack = 1.0 - yo - t * yq
        on = slack > 0
        return 2 * lam * (bkd + t * dkd) - 2 * float(yq[on] @ slack[on]), 2 * lam * dkd + 2 * float(yq[on] @ yq[on])

    scale = 1e-12 * (1.0 + abs(bkd) + abs(dkd) + float(np.abs(yq).sum()))
    g, _ = slope(1.0)
    if abs(g) <= scale:
        return 1.0
    lo, hi = 0.0, 1.0
    while g < 0:  # the minimum lies beyond t = 1 (rare): widen the bracket
        lo, hi = hi, 2 * hi
        g, _ = slope(hi)
        if hi > 1e6:
            return hi
    t = 0.5 * (lo + hi)
    for _ in range(200):
        g, h = slope(t)
        if abs(g) <= scale:
            break
        lo, hi = (t, hi) if g < 0 else (lo, t)
        step = t - g / h if h > 0 else 0.5 * (lo + hi)
        t = step if lo < step < hi else 0.5 * (lo + hi)
        if hi - lo <= 1e-15 * hi:
            break
    return t


class _Solver:
    """Solves (K_SS + lam I) x = b for subsets S of the samples, sharing work across classes.

    Directly: a Cholesky factor of the |S| x |S| block. When most samples are active (small C)
    the complement R is small, and it is cheaper to invert A = K + lam I once per lam (for all
    classes) and use (A_SS)^-1 = M_SS - M_SR M_RR^-1 M_RS with M = A^-1: an |R| x |R| solve.
    """

    def __init__(self, K: np.ndarray):
        self.K = K
        self.n = K.shape[0]
        self._inverse: tuple[float, np.ndarray] | None = None

    def inverse(self, lam: float) -> np.ndarray:
        if self._inverse is None or self._inverse[0] != lam:
            A = self.K.copy()
            A.flat[:: self.n + 1] += lam
            factor, info = lapack.dpotrf(A, lower=1, overwrite_a=1, clean=0)
            if info != 0:
                raise FloatingPointError("K + lam I is not positive definite (NaN or inf in the features?)")
            M, info = lapack.dpotri(factor, lower=1, overwrite_c=1)
            # Valid in the lower triangle only (symmetrising costs a quarter of the inverse at n = 4,000):
            # read through dsymv and lower Cholesky factors.
            self._inverse = (lam, M)
        return self._inverse[1]

    def solve(self, active: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
        S = np.flatnonzero(active)
        R = np.flatnonzero(~active)
        if len(S) == 0:
            return np.zeros(0)
        if len(R) < len(S):
            M = self.inverse(lam)
            padded = np.zeros(self.n)
            padded[S] = b
            u = blas.dsymv(1.0, M, padded, lower=1)  # M_{:,S} b
            if len(R) == 0:
                return u
            z = np.zeros(self.n)
            # M_RR's lower triangle is M's (R is sorted); a lower Cholesky reads nothing else.
            factor = linalg.cho_factor(M[np.ix_(R, R)], lower=True, overwrite_a=True, check_finite=False)
            z[R] = linalg.cho_solve(factor, u[R], check_finite=False)
            return (u - blas.dsymv(1.0, M, z, lower=1))[S]  # u_S - M_SR z_R
        A = self.K[np.ix_(S, S)]  # np.ix_: ~10x faster than chained fancy indexing here
        A.flat[:: len(S) + 1] += lam
        # cho_factor/cho_solve: scipy's solve(assume_a="pos") went through a backend the thread limit missed.
        factor = linalg.cho_factor(A, lower=True, overwrite_a=True, check_finite=False)
        return linalg.cho_solve(factor, b, check_finite=False)


def solve_l2svm(
    solver: _Solver, y: np.ndarray, C: float, beta: np.ndarray | None = None, max_iter: int = 100
) -> tuple[np.ndarray, int]:
    """(beta minimising lam beta^T K beta + sum max(0, 1 - y_i (K beta)_i)^2 with lam = 1/(2C), Newton steps)."""
    K, n = solver.K, solver.n
    lam = 1.0 / (2.0 * C)
    if beta is None:
        beta, kb = np.zeros(n), np.zeros(n)
    else:
        kb = K @ beta
    active = y * kb < 1
    for step in range(1, max_iter + 1):
        target = np.zeros(n)
        target[active] = solver.solve(active, y[active], lam)  # the Newton point for this active set
        d = target - beta
        kd = K @ d
        t = _line_search(lam, beta, d, kb, kd, y)
        beta = beta + t * d
        kb = kb + t * kd
        now_active = y * kb < 1
        if t == 1.0 and np.array_equal(now_active, active):
            return beta, step
        active = now_active
    warnings.warn(
        f"L2-SVM Newton did not settle in {max_iter} steps (C={C}); using the last iterate",
        RuntimeWarning,
        stacklevel=2,
    )
    return beta, max_iter


def fit_path(x: np.ndarray, y: np.ndarray, c_grid=C_GRID, K: np.ndarray | None = None) -> list[LinearModel]:
    """One LinearModel per C (in c_grid's order), each class warm-started along the ascending C.

    ``K`` is X X^T + 1 when already computed (sliced from the Gram of a larger pool, say).
    """
    x = np.asarray(x, dtype=np.float32)
    classes, Y = one_vs_rest_targets(y)
    if K is None:
        K = gram(x)
    order = np.argsort(c_grid, kind="stable")
    k = Y.shape[1]
    betas: dict[tuple[int, int], np.ndarray] = {}
    with single_threaded(len(x)):
        solver = _Solver(K)
        warm: list[np.ndarray | None] = [None] * k
        for i in order:  # C outside, classes inside: the solver's per-C inverse serves every class
            for j in range(k):
                warm[j], _ = solve_l2svm(solver, Y[:, j], float(c_grid[i]), warm[j])
                betas[i, j] = warm[j]
    B = np.stack([betas[i, j] for i in range(len(c_grid)) for j in range(k)], axis=1)  # (n, |grid| k) float64
    W = np.zeros((B.shape[1], x.shape[1]))
    for lo in range(0, len(x), 2048):  # w = sum_i beta_i x_i, summed in float64: beta has cancellations
        W += B[lo : lo + 2048].T @ x[lo : lo + 2048].astype(np.float64)
    models = []
    for i in range(len(c_grid)):
        coef = W[i * k : (i + 1) * k].astype(np.float32)
        intercept = B[:, i * k : (i + 1) * k].sum(0).astype(np.float32)  # b = sum_i beta_i
        models.append(LinearModel(classes, coef, intercept))
    return models

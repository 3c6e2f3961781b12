"""Principal Component Pursuit: recovery of planted low-rank + sparse matrices, and masks."""

from __future__ import annotations

import numpy as np
import pytest

from training.rpca import rpca_masks, rpca_pcp, svt, window_bounds


def planted(n: int, p: int, rank: int = 3, density: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    low = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, p))
    sparse = np.zeros((n, p))
    where = rng.random((n, p)) < density
    sparse[where] = rng.uniform(-10, 10, int(where.sum()))
    return low, sparse


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("shape", [(80, 500), (500, 80)], ids=["N<P", "N>P"])
def test_recovers_planted_low_rank_plus_sparse(shape):
    low, sparse = planted(*shape)
    L, S, info = rpca_pcp(low + sparse)
    assert info["converged"] and info["rel_error"] < 1e-7
    assert 0 < info["iterations"] < 500
    assert rel(L, low) < 1e-3
    assert rel(S, sparse) < 1e-3
    assert np.linalg.matrix_rank(L, tol=1e-6 * np.abs(L).max()) == 3
    # the support of S matches the planted corruptions
    assert np.array_equal(np.abs(S) > 1e-3, sparse != 0)


def test_default_lambda_is_inverse_sqrt_of_larger_side():
    low, sparse = planted(30, 200, seed=1)
    M = low + sparse
    L0, S0, _ = rpca_pcp(M)
    L1, S1, _ = rpca_pcp(M, lam=1 / np.sqrt(200))
    np.testing.assert_allclose(L0, L1)
    np.testing.assert_allclose(S0, S1)
    # a huge lambda forbids any sparse part; a different lambda gives a different split
    L2, S2, _ = rpca_pcp(M, lam=1.0)
    assert np.abs(S2).sum() < np.abs(S0).sum()


def test_max_iter_stops_without_convergence():
    low, sparse = planted(30, 200, seed=2)
    _, _, info = rpca_pcp(low + sparse, tol=1e-12, max_iter=3)
    assert info["iterations"] == 3 and not info["converged"] and info["rel_error"] > 1e-12


def test_zero_matrix():
    L, S, info = rpca_pcp(np.zeros((5, 7)))
    assert not L.any() and not S.any() and L.shape == (5, 7)
    assert info["converged"] and info["rel_error"] == 0.0


def test_svt_matches_full_svd_both_orientations():
    rng = np.random.default_rng(3)
    for shape in [(6, 20), (20, 6)]:
        X = rng.standard_normal(shape)
        U, s, Vt = np.linalg.svd(X, full_matrices=False)
        tau = float(np.median(s))
        want = (U * np.maximum(s - tau, 0)) @ Vt
        got, rank = svt(X, tau)
        np.testing.assert_allclose(got, want, atol=1e-10)
        assert rank == int((s > tau).sum())


def test_window_bounds_cover_and_merge_short_tail():
    assert window_bounds(9, 4) == [(0, 4), (4, 9)]
    assert window_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert window_bounds(12, 4) == [(0, 4), (4, 8), (8, 12)]
    assert window_bounds(3, 200) == [(0, 3)]
    b = window_bounds(1231, 200)
    assert b[0][0] == 0 and b[-1][1] == 1231 and all(x[1] == y[0] for x, y in zip(b, b[1:]))
    assert min(e - s for s, e in b) >= 100


def test_rpca_masks_find_moving_square():
    rng = np.random.default_rng(4)
    n, h, w = 30, 24, 32
    bg = rng.uniform(0.2, 0.8, (h, w))
    frames = np.repeat(bg[None], n, axis=0) * rng.uniform(0.9, 1.1, (n, 1, 1))  # global light
    frames += rng.normal(0, 0.005, frames.shape)
    truth = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        x = i % (w - 6)
        truth[i, 8:14, x:x + 6] = True
    frames[truth] = 1.0 - frames[truth] * 0.2 - 0.1
    masks = rpca_masks(frames, window=15)
    assert masks.shape == truth.shape and masks.dtype == bool
    tp = (masks & truth).sum()
    f = 2 * tp / (masks.sum() + truth.sum())
    assert f > 0.9, f
    # uint8 input is scaled the same way
    masks8 = rpca_masks(np.clip(frames * 255, 0, 255).astype(np.uint8), window=15)
    assert 2 * (masks8 & truth).sum() / (masks8.sum() + truth.sum()) > 0.9


def test_no_full_svd_is_used(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("rpca must not call a full SVD")

    monkeypatch.setattr(np.linalg, "svd", forbidden)
    low, sparse = planted(60, 300, seed=5)
    L, _, info = rpca_pcp(low + sparse)
    assert info["converged"] and rel(L, low) < 1e-3

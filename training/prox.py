"""Low-rank and sparse losses whose gradients are their proximal mappings.

Neither the nuclear norm nor the l1 norm is differentiable everywhere. Following Sakai
(arXiv 2106.10923), the backward pass of ``w * ||X||`` is ``X - prox_w(X)``: the gradient of
the norm's Moreau envelope. One SGD step with learning rate 1 on a free ``X`` is then
exactly the proximal step ``X <- prox_w(X)``.

* l1:      prox = soft thresholding, so ``X - soft(X, w) = clip(X, -w, w)``.
* nuclear: prox = singular value thresholding (SVT). For ``M`` of shape (N, P) it is computed
  through the smaller Gram matrix (N x N or P x P, eigh in float64), never a full SVD of
  N x P: with ``G = M M^T = U diag(s^2) U^T``, ``SVT_w(M) = U diag(max(s - w, 0) / s) U^T M``.
"""

from __future__ import annotations

import torch


def soft_threshold(x: torch.Tensor, w: float) -> torch.Tensor:
    """prox of w*||x||_1: shrink every entry towards 0 by w."""
    return torch.sign(x) * torch.clamp(x.abs() - w, min=0.0)


def _gram_eig(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Singular values and the eigenvectors of the smaller Gram matrix, in float64.

    Returns (s, V, rows): if rows, V holds left singular vectors (G = M M^T), else right ones.
    """
    m64 = m.detach().to(torch.float64)
    if not torch.isfinite(m64).all():  # eigh would fail with an opaque linear-algebra error
        raise FloatingPointError("a non-finite value (NaN or inf) reached the low-rank term")
    rows = m.shape[0] <= m.shape[1]
    gram = m64 @ m64.T if rows else m64.T @ m64
    evals, evecs = torch.linalg.eigh(gram)
    # Eigenvalues below the Gram matrix's rounding level are zero singular values, not noise to sum.
    tol = evals.abs().max() * max(gram.shape[0], 1) * torch.finfo(torch.float64).eps
    s = torch.sqrt(torch.where(evals > tol, evals, torch.zeros_like(evals)))
    return s, evecs, rows


def _apply_spectral(m: torch.Tensor, factor: torch.Tensor, evecs: torch.Tensor, rows: bool) -> torch.Tensor:
    """U diag(factor) U^T M (rows) or M V diag(factor) V^T (columns), in M's dtype."""
    coef = (evecs * factor) @ evecs.T
    coef = coef.to(m.dtype)
    return coef @ m if rows else m @ coef


def svt(m: torch.Tensor, w: float) -> torch.Tensor:
    """Singular value thresholding SVT_w(M) = prox of w*||M||_* (via the Gram matrix)."""
    s, evecs, rows = _gram_eig(m)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    factor = torch.where(s > w, (s - w) / safe, torch.zeros_like(s))
    return _apply_spectral(m.detach(), factor, evecs, rows)


def nuclear_norm(m: torch.Tensor) -> torch.Tensor:
    """Sum of singular values of a 2-D tensor, via the Gram matrix (float64 inside)."""
    s, _, _ = _gram_eig(m)
    return s.sum().to(m.dtype)


class _L1Prox(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(s)
        ctx.weight = weight
        return weight * s.abs().sum()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (s,) = ctx.saved_tensors
        # S - soft(S, w) == clip(S, -w, w)
        return grad_out * torch.clamp(s, -ctx.weight, ctx.weight), None


class _NuclearProx(torch.autograd.Function):
    @staticmethod
    def forward(ctx, m: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        s, evecs, rows = _gram_eig(m)
        # M - SVT_w(M) = U diag(min(s, w) / s) U^T M ; components with s == 0 contribute 0.
        safe = torch.where(s > 0, s, torch.ones_like(s))
        factor = torch.where(s > 0, torch.clamp(s, max=weight) / safe, torch.zeros_like(s))
        ctx.save_for_backward(m, factor, evecs)
        ctx.rows = rows
        return (weight * s.sum()).to(m.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        m, factor, evecs = ctx.saved_tensors
        return grad_out * _apply_spectral(m, factor, evecs, ctx.rows), None


def l1_loss(s: torch.Tensor, weight: float) -> torch.Tensor:
    """weight * sum|S|; backward grad_out * (S - soft(S, weight))."""
    return _L1Prox.apply(s, float(weight))


def nuclear_loss(m: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """weight * ||M||_* for M of shape (N, P), rows = frames; backward grad_out * (M - SVT_weight(M))."""
    if m.dim() != 2:
        raise ValueError(f"nuclear_loss expects a 2-D (frames x pixels) matrix, got shape {tuple(m.shape)}")
    return _NuclearProx.apply(m, float(weight))


def default_lambda(n: int, p: int) -> float:
    """The PCP default lambda = 1 / sqrt(max(N, P))."""
    return 1.0 / float(max(n, p)) ** 0.5


def low_rank_sparse_loss(d: torch.Tensor, s: torch.Tensor, lam: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """||D - S||_* + lam * ||S||_1 over a batch of N frames of one scene (rows = frames).

    Returns (total, nuclear term, sparse term).
    """
    n = d.shape[0]
    dm = d.reshape(n, -1)
    sm = s.reshape(n, -1)
    lam = default_lambda(n, dm.shape[1]) if lam is None else lam
    nuc = nuclear_loss(dm - sm, 1.0)
    sp = l1_loss(sm, lam)
    return nuc + sp, nuc.detach(), sp.detach()

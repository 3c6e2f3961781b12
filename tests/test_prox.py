"""The proximal losses: values, gradients = X - prox(X), and degenerate inputs."""

from __future__ import annotations

import pytest
import torch

from training.prox import default_lambda, l1_loss, nuclear_loss, soft_threshold, svt


def explicit_svt(m: torch.Tensor, w: float) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return u @ torch.diag(torch.clamp(s - w, min=0.0)) @ vh


SHAPES = [(6, 40), (40, 6), (8, 8)]


@pytest.mark.parametrize("shape", SHAPES)
def test_nuclear_forward_matches_svdvals(shape):
    g = torch.Generator().manual_seed(1)
    m = torch.randn(*shape, generator=g, dtype=torch.float64)
    got = nuclear_loss(m, 0.7)
    want = 0.7 * torch.linalg.svdvals(m).sum()
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("w", [0.0, 0.5, 3.0, 100.0])
def test_nuclear_backward_is_m_minus_svt(shape, w):
    g = torch.Generator().manual_seed(2)
    m = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    nuclear_loss(m, w).backward()
    want = m.detach() - explicit_svt(m.detach(), w)
    assert torch.allclose(m.grad, want, atol=1e-9)
    assert torch.allclose(svt(m.detach(), w), explicit_svt(m.detach(), w), atol=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
def test_sgd_step_lr1_is_the_proximal_step(shape):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = 1.3
    opt = torch.optim.SGD([x], lr=1.0)
    start = x.detach().clone()
    nuclear_loss(x, w).backward()
    opt.step()
    assert torch.allclose(x.detach(), explicit_svt(start, w), atol=1e-9)

    y = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    start = y.detach().clone()
    opt = torch.optim.SGD([y], lr=1.0)
    l1_loss(y, 0.4).backward()
    opt.step()
    assert torch.allclose(y.detach(), soft_threshold(start, 0.4), atol=1e-12)


def test_l1_forward_and_backward():
    s = torch.tensor([[-2.0, -0.1, 0.0, 0.3, 5.0]], dtype=torch.float64, requires_grad=True)
    loss = l1_loss(s, 0.5)
    assert loss.item() == pytest.approx(0.5 * 7.4)
    (3.0 * loss).backward()
    want = 3.0 * (s.detach() - soft_threshold(s.detach(), 0.5))
    assert torch.allclose(s.grad, want)
    assert torch.allclose(s.grad, torch.tensor([[-1.5, -0.3, 0.0, 0.9, 1.5]], dtype=torch.float64))


@pytest.mark.parametrize("shape", SHAPES)
def test_degenerate_matrices_have_finite_gradients(shape):
    n, p = shape
    cases = {
        "zero": torch.zeros(n, p, dtype=torch.float64),
        "rank1": torch.outer(torch.arange(1.0, n + 1, dtype=torch.float64), torch.ones(p, dtype=torch.float64)),
        "repeated": torch.eye(n, p, dtype=torch.float64) * 2.0,  # all singular values equal
    }
    for name, m in cases.items():
        m = m.clone().requires_grad_(True)
        loss = nuclear_loss(m, 0.5)
        loss.backward()
        assert torch.isfinite(loss), name
        assert torch.isfinite(m.grad).all(), name
        want = m.detach() - explicit_svt(m.detach(), 0.5)
        assert torch.allclose(m.grad, want, atol=1e-7), name
        assert loss.item() == pytest.approx(0.5 * torch.linalg.svdvals(m.detach()).sum().item(), abs=1e-7)


def test_float32_input_and_grad_out_scaling():
    g = torch.Generator().manual_seed(4)
    m = torch.randn(5, 300, generator=g, requires_grad=True)
    (2.5 * nuclear_loss(m, 1.0)).backward()
    want = 2.5 * (m.detach().double() - explicit_svt(m.detach().double(), 1.0))
    assert m.grad.dtype == torch.float32
    assert torch.allclose(m.grad.double(), want, atol=1e-4)


def test_default_lambda():
    assert default_lambda(32, 10000) == pytest.approx(0.01)
    assert default_lambda(400, 100) == pytest.approx(0.05)


def test_rejects_non_matrix():
    with pytest.raises(ValueError):
        nuclear_loss(torch.zeros(2, 3, 4), 1.0)


def test_a_non_finite_input_is_a_floating_point_error_not_a_linalg_traceback():
    """A NaN in S reached eigh and came out as '_LinAlgError ... error code 15'; the trainer turns this error into 'the loss diverged'."""
    m = torch.rand(4, 10, dtype=torch.float64, requires_grad=True)
    for bad in (float("nan"), float("inf")):
        x = m.detach().clone()
        x[1, 2] = bad
        with pytest.raises(FloatingPointError, match="non-finite"):
            nuclear_loss(x.requires_grad_(), 1.0)

"""Distillation losses against hand-computed values and their defining properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deep.kd_loss import EmbeddingDistillation, distillation_loss, soft_target_kl


def _manual(student, teacher, labels, T, alpha):
    """Straight from the formula, one sample at a time, in float64 Python arithmetic."""
    total = 0.0
    for s, t, y in zip(student.tolist(), teacher.tolist(), labels.tolist(), strict=True):
        ce = -s[y] + math.log(sum(math.exp(v) for v in s))
        zs = sum(math.exp(v / T) for v in s)
        zt = sum(math.exp(v / T) for v in t)
        ps = [math.exp(v / T) / zs for v in s]
        pt = [math.exp(v / T) / zt for v in t]
        kl = sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=True))
        total += (1 - alpha) * ce + alpha * T * T * kl
    return total / len(labels)


def test_hand_computed_two_class_case():
    # student logits (0, 0): p_s = (1/2, 1/2) at any T. teacher (ln 3, 0) at T=1: p_t = (3/4, 1/4).
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    labels = torch.tensor([0])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    ce = math.log(2.0)
    loss = distillation_loss(student, teacher, labels, T=1.0, alpha=0.5)
    assert loss.item() == pytest.approx(0.5 * ce + 0.5 * kl, rel=1e-6)


@pytest.mark.parametrize(("T", "alpha"), [(1.0, 0.3), (4.0, 0.9), (10.0, 1.0)])
def test_matches_formula_on_random_logits(T, alpha):
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(5, 7, generator=gen, dtype=torch.float64) * 3
    teacher = torch.randn(5, 7, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, 7, (5,), generator=gen)
    got = distillation_loss(student, teacher, labels, T=T, alpha=alpha).item()
    assert got == pytest.approx(_manual(student, teacher, labels, T, alpha), rel=1e-9)


def test_alpha_zero_is_plain_cross_entropy():
    gen = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    labels = torch.tensor([0, 5, 2, 2])
    got = distillation_loss(student, teacher, labels, T=4.0, alpha=0.0)
    assert torch.equal(got, F.cross_entropy(student, labels))


def test_soft_term_is_zero_when_student_equals_teacher():
    logits = torch.randn(3, 5)
    assert soft_target_kl(logits, logits.clone(), T=3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_does_not_reach_teacher():
    teacher_layer = torch.nn.Linear(4, 3)
    student_layer = torch.nn.Linear(4, 3)
    x = torch.randn(6, 4)
    before = [p.detach().clone() for p in teacher_layer.parameters()]
    optimiser = torch.optim.SGD(student_layer.parameters(), lr=0.1)
    loss = distillation_loss(
        student_layer(x), teacher_layer(x), torch.tensor([0, 1, 2, 0, 1, 2]), T=4.0, alpha=0.9
    )
    loss.backward()
    optimiser.step()
    assert all(p.grad is None for p in teacher_layer.parameters())
    for old, new in zip(before, teacher_layer.parameters(), strict=True):
        assert torch.equal(old, new)


def test_t_squared_keeps_gradient_scale():
    """The T^2 factor makes the soft gradient independent of T for large T.

    Concretely, with zero-mean logits the gradient of T^2 * KL tends to (z_s - z_t) / num_classes as
    T grows (Hinton et al., section 2.1), so it neither vanishes nor explodes with T.
    """
    student = torch.tensor([[1.0, -0.5, -0.5]], requires_grad=True)
    teacher = torch.tensor([[-1.0, 0.5, 0.5]])
    grads = []
    for T in (20.0, 200.0):
        student.grad = None
        soft_target_kl(student, teacher, T=T).backward()
        grads.append(student.grad.clone())
    expected = (student.detach() - teacher) / 3
    torch.testing.assert_close(grads[1], expected, rtol=1e-2, atol=1e-4)
    # Without the T^2 factor the two gradients would differ by (200 / 20)^2 = 100x.
    torch.testing.assert_close(grads[0], grads[1], rtol=0.05, atol=1e-3)


def test_bad_arguments():
    s, t, y = torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, t, y, T=2.0, alpha=1.5)
    with pytest.raises(ValueError, match="T must be > 0"):
        distillation_loss(s, t, y, T=0.0, alpha=0.5)
    with pytest.raises(ValueError, match="classifier space"):
        distillation_loss(s, torch.zeros(2, 4), y, T=2.0, alpha=0.5)
    with pytest.raises(ValueError, match="labels"):
        distillation_loss(s, t, torch.tensor([0]), T=2.0, alpha=0.5)


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_embedding_distillation(kind):
    torch.manual_seed(0)
    term = EmbeddingDistillation(4, 6, kind=kind)
    student = torch.randn(8, 4)
    teacher = torch.randn(8, 6, requires_grad=True)
    loss = term(student, teacher)
    loss.backward()
    assert loss.item() > 0 and teacher.grad is None
    assert term.adapter.weight.grad is not None
    # A perfect adapter gives zero loss.
    with torch.no_grad():
        term.adapter.weight.copy_(torch.eye(6, 4))
    target = torch.cat([student, torch.zeros(8, 2)], dim=1)
    assert term(student, target).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="kind"):
        EmbeddingDistillation(4, 6, kind="l1")


def test_loss_is_public_in_deep_distill():
    from deep import distill, kd_loss

    assert distill.distillation_loss is kd_loss.distillation_loss

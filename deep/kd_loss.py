"""Knowledge-distillation losses: Hinton et al. (2015) soft targets, plus an embedding-level term.

The logit loss is the one the paper distils with::

    L = (1 - alpha) * CE(labels, z_s) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))

with the KL divergence summed over classes and both terms averaged over the batch. The ``T^2``
factor keeps the soft term's gradient on the same scale as the hard term's when ``T`` changes
(the gradient of the soft term scales as ``1 / T^2``).

Re-ID ranks embeddings, not logits, so :class:`EmbeddingDistillation` offers a feature-level term
as an option: the student's embedding goes through a learned linear adapter to the teacher's
embedding size and is pulled towards the teacher's embedding (MSE or cosine).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    if student_logits.ndim != 2 or teacher_logits.ndim != 2:
        raise ValueError(
            f"logits must be 2-D (batch, classes); got student {tuple(student_logits.shape)} and "
            f"teacher {tuple(teacher_logits.shape)}"
        )
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ: teacher and student must share the training-id "
            "classifier space (same dataset, same number of training ids)"
        )


def soft_target_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, T: float
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, summed over classes, batch mean.

    The teacher's logits are detached: no gradient ever reaches the teacher.
    """
    _check_logits(student_logits, teacher_logits)
    if not T > 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / T, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return (T * T) * kl.mean()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    T: float,
    alpha: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Hinton distillation loss, mean over the batch.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor of shape (batch, num_classes)
        Pre-softmax outputs over the same training ids.
    labels : Tensor of shape (batch,)
        Training-id labels in ``0..num_classes-1``.
    T : float
        Softmax temperature, > 0.
    alpha : float
        Weight of the soft-target term in [0, 1]; ``alpha=0`` is plain cross-entropy.
    label_smoothing : float
        Passed to the hard cross-entropy term (0 in the paper).

    Returns
    -------
    Tensor
        Scalar loss.
    """
    _check_logits(student_logits, teacher_logits)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if labels.ndim != 1 or labels.shape[0] != student_logits.shape[0]:
        raise ValueError(
            f"labels must have shape ({student_logits.shape[0]},), got {tuple(labels.shape)}"
        )
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if alpha == 0.0:
        return hard
    soft = soft_target_kl(student_logits, teacher_logits, T=T)
    return (1.0 - alpha) * hard + alpha * soft


class EmbeddingDistillation(nn.Module):
    """Pull the student's embedding, through a linear adapter, towards the teacher's.

    Parameters
    ----------
    student_dim, teacher_dim : int
        Embedding sizes.
    kind : {"mse", "cosine"}
        ``mse``: mean squared error between the adapted student embedding and the teacher's
        (averaged over dimensions and batch); ``cosine``: ``1 - cos`` averaged over the batch.
    """

    def __init__(self, student_dim: int, teacher_dim: int, *, kind: str = "cosine") -> None:
        super().__init__()
        if kind not in ("mse", "cosine"):
            raise ValueError(f"kind must be 'mse' or 'cosine', got {kind!r}")
        self.kind = kind
        self.adapter = nn.Linear(student_dim, teacher_dim, bias=False)

    def forward(self, student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
        adapted = self.adapter(student_emb)
        target = teacher_emb.detach()
        if adapted.shape != target.shape:
            raise ValueError(
                f"adapted student embedding {tuple(adapted.shape)} does not match the teacher's "
                f"{tuple(target.shape)}"
            )
        if self.kind == "mse":
            return F.mse_loss(adapted, target)
        return (1.0 - F.cosine_similarity(adapted, target, dim=1)).mean()

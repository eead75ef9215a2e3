"""Hard-concrete gates (Louizos, Welling, Kingma, "Learning Sparse Neural Networks through L0
Regularization", ICLR 2018) and the Lagrangian's gradient ascent, as CoFi's reference code uses them.

Why in the core: every method that learns which units or tokens to keep under a budget (CoFi's
structural masks, ToP's token-rank gates) draws the same stretched hard-concrete samples in training,
counts the same keep probabilities into its expected cost, and ascends the same Lagrange multipliers;
written once, they are offered to plugins through `harness.plugin`.

A gate with parameter log_alpha is a stretched, clamped binary-concrete variable: s = sigmoid((log u -
log(1 - u) + log_alpha) / beta), z = clamp(s (hi - lo) + lo, 0, 1) with u ~ U(0, 1), stretch (lo, hi)
= (-0.1, 1.1) and temperature beta = 2/3 (the paper's and CoFi's values). P(z > 0) has a closed form
(`keep_probability`), which makes the expected number of open gates differentiable.
"""
from __future__ import annotations

import math

import torch

STRETCH = (-0.1, 1.1)
BETA = 2.0 / 3.0
LOG_ALPHA_RANGE = (math.log(1e-2), math.log(1e2))
EPS = 1e-6


def keep_probability(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(gate > 0) = 1 - Q(0), Q the CDF of the stretched hard-concrete."""
    lo, hi = STRETCH
    x = (0.0 - lo) / (hi - lo)
    q0 = torch.sigmoid(math.log(x / (1 - x)) * BETA - log_alpha).clamp(EPS, 1 - EPS)
    return 1.0 - q0


def sample_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """A reparameterised hard-concrete sample in [0, 1] (exact zeros and ones)."""
    u = torch.rand_like(log_alpha).clamp(EPS, 1 - EPS)
    y = torch.sigmoid((torch.log(u) - torch.log(1 - u) + log_alpha) / BETA)
    lo, hi = STRETCH
    return (y * (hi - lo) + lo).clamp(0.0, 1.0)


@torch.no_grad()
def deterministic_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """The reference's inference gate for one group (last dim): the
    round(size - expected kept) smallest soft values become zero."""
    soft = torch.sigmoid(log_alpha / BETA * 0.8)
    flat_soft, flat_la = soft.reshape(-1, soft.shape[-1]), log_alpha.reshape(-1, soft.shape[-1])
    out = flat_soft.clone()
    for row, la in zip(out, flat_la):
        zeros = int(round(la.numel() - float(keep_probability(la).sum())))
        if zeros > 0:
            row[torch.argsort(row, stable=True)[:zeros]] = 0.0
    return out.reshape(soft.shape)


class GradientAscent(torch.autograd.Function):
    """Identity forward, negated gradient: minimising the loss ascends on the input."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad

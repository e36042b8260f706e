"""Losses and weights several agents share (each cites where it comes from).

All take and return tensors with a leading seed dimension where the agent has one; reductions
over the batch are left to the agent (`seed_mean`).
"""
from __future__ import annotations

import math

import torch


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """|tau - 1(diff < 0)| diff^2, elementwise (IQL, Kostrikov et al. 2022, eq. 5), diff = Q - V."""
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff.pow(2)


def awr_weight(advantage: torch.Tensor, beta: float, clip: float = 100.0) -> torch.Tensor:
    """min(exp(beta A), clip), detached: advantage-weighted regression (Peng et al. 2019; IQL
    eq. 7, f-DVL's actor)."""
    return torch.exp(beta * advantage.detach()).clamp_max(clip)


def effective_batch_share(weight: torch.Tensor) -> torch.Tensor:
    """[S, B] -> [S]: Kish's effective sample size (sum w)^2 / sum w^2 of a weighted-BC batch, as
    a share of the batch (1: plain BC; 1/B: one transition carries the whole loss). Adam's step
    does not shrink with the weights' scale, but the policy learns from this many transitions."""
    w = weight.reshape(weight.shape[0], -1)
    return w.sum(1).pow(2) / torch.clamp_min(w.pow(2).sum(1), 1e-30) / w.shape[1]


def cosine_scale(step: torch.Tensor, total_steps: int) -> torch.Tensor:
    """(1 + cos(pi t / T)) / 2, t clamped at T: CosineAnnealingLR's factor, as a device tensor."""
    t = torch.clamp(step / max(total_steps, 1), max=1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * t))


def smoothed_target_action(target_actor, next_obs: torch.Tensor, noise: float, noise_clip: float,
                           max_action: float = 1.0) -> torch.Tensor:
    """TD3's target policy smoothing: clip(pi'(s') + clip(N(0, noise^2), +-c), +-max_action)."""
    action = target_actor(next_obs)
    eps = (torch.randn_like(action) * noise).clamp(-noise_clip, noise_clip)
    return (action + eps).clamp(-max_action, max_action)

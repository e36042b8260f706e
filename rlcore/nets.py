"""Networks shared by every agent.

`MLP` takes an `ensemble` size k: its weights then have a leading member dimension and it
maps [B, in] (or [k, B, in]) to [k, B, out] with one batched matmul, so twin critics cost
one kernel per layer instead of two.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """k independent linear layers; each initialised as torch.nn.Linear would be."""

    def __init__(self, in_features: int, out_features: int, ensemble: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default (kaiming_uniform, a=sqrt 5)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.expand(self.weight.shape[0], *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over features with a separate affine per member."""

    def __init__(self, features: int, ensemble: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ensemble, 1, features))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
        return x * self.weight + self.bias


class MLP(nn.Module):
    """Linear -> [LayerNorm] -> activation, repeated; a plain linear output layer."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False,
                 activation: type[nn.Module] = nn.ReLU, ensemble: int | None = None,
                 squeeze: bool = False):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b) if ensemble is None else EnsembleLinear(a, b, ensemble))
            if i < len(dims) - 2:
                if layer_norm:
                    layers.append(nn.LayerNorm(b) if ensemble is None else EnsembleLayerNorm(b, ensemble))
                layers.append(activation())
        self.net = nn.Sequential(*layers)
        self.squeeze = squeeze

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return y.squeeze(-1) if self.squeeze else y


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std))^2), summed over the last dimension."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class GaussianPolicy(nn.Module):
    """N(mu(s), diag(exp(log_std))^2) with a state-independent log-std clamped to [-5, 2]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], tanh_mean: bool = False,
                 log_std_min: float = -5.0, log_std_max: float = 2.0):
        super().__init__()
        self.mean_net = MLP(obs_dim, hidden, action_dim)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.tanh_mean = tanh_mean
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean_net(obs)
        if self.tanh_mean:
            mean = torch.tanh(mean)
        return mean, self.log_std.clamp(self.log_std_min, self.log_std_max)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Diagonal-Gaussian log-density, summed over action dimensions."""
        mean, log_std = self(obs)
        return gaussian_log_prob(actions, mean, log_std)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        mean, log_std = self(obs)
        action = mean if deterministic else mean + torch.randn_like(mean) * log_std.exp()
        return action.clamp(-1.0, 1.0)


class TanhGaussianPolicy(nn.Module):
    """a = tanh(u), u ~ N(mu(s), sigma(s)^2) with a state-dependent log-std in [-5, 2] (SAC)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int],
                 log_std_min: float = -5.0, log_std_max: float = 2.0):
        super().__init__()
        self.net = MLP(obs_dim, hidden, 2 * action_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action and its log-density, with the tanh change of variables:
        log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2), the last term as
        2 (log 2 - u - softplus(-2u)) for numerical stability."""
        mean, log_std = self(obs)
        u = mean + torch.randn_like(mean) * log_std.exp()
        log_prob = gaussian_log_prob(u, mean, log_std)
        log_prob = log_prob - (2 * (math.log(2) - u - nn.functional.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        if deterministic:
            return torch.tanh(self(obs)[0])
        return self.sample(obs)[0]


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * source, in one fused op over all tensors."""
    t = [p for p in target.parameters()]
    s = [p for p in source.parameters()]
    torch._foreach_lerp_(t, s, tau)

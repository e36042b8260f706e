"""Networks shared by every agent.

Member-batched networks carry independent copies in one set of tensors, so that K seeds, and
twin heads within each seed, cost one batched matmul per layer instead of K (or 2K) matmuls:

- `MLP(..., seeds=S)` maps [S, *batch, in] to [S, *batch, out]: seed s's inputs only ever meet
  seed s's weights. (Broadcast a shared input with `x.expand(S, *x.shape)`.)
- `MLP(..., heads=H)` gives H heads that all see the same input: [S, *batch, in] ->
  [S, H, *batch, out] (or [H, *batch, out] without seeds).

Every parameter's leading dimension is seed-major (member index = s * H + h), so the state of
seed s is a contiguous slice: that is what `rlcore.training.seeds` stacks and splits.
"""
from __future__ import annotations

import functools
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [members, N, in] -> [members, N, out]
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
    """Linear -> [LayerNorm] -> activation, repeated; a plain linear output layer.

    `seeds` / `heads` make it member-batched (see the module docstring); `ensemble=k` is an
    alias of `heads=k`.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False,
                 activation: type[nn.Module] = nn.ReLU, seeds: int | None = None,
                 heads: int | None = None, ensemble: int | None = None, squeeze: bool = False,
                 orthogonal_init: float | None = None, norm_after_activation: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        heads = heads or ensemble
        self.lead = tuple(n for n in (seeds, heads) if n is not None)   # leading member dims
        self.seeds, self.heads = seeds, heads
        members = math.prod(self.lead) if self.lead else None
        dims = [in_dim, *hidden, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b) if members is None else EnsembleLinear(a, b, members))
            if i < len(dims) - 2:
                if dropout > 0:            # after the linear layer, as CPL's MLP places it
                    layers.append(nn.Dropout(dropout))
                norm = ([nn.LayerNorm(b) if members is None else EnsembleLayerNorm(b, members)]
                        if layer_norm else [])
                # Linear -> LayerNorm -> act, or Linear -> act -> LayerNorm (OGBench's order)
                layers.extend([activation(), *norm] if norm_after_activation else [*norm, activation()])
        self.net = nn.Sequential(*layers)
        self.squeeze = squeeze
        if orthogonal_init is not None:  # jaxrl's default_init: orthogonal(gain), zero bias
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    nn.init.orthogonal_(layer.weight, gain=orthogonal_init)
                    nn.init.zeros_(layer.bias)
                elif isinstance(layer, EnsembleLinear):     # weight [members, in, out]
                    with torch.no_grad():
                        for w in layer.weight:
                            w.copy_(nn.init.orthogonal_(torch.empty(w.T.shape), gain=orthogonal_init).T)
                        layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.lead:
            y = self.net(x)
        else:
            seed_dims = ()
            if self.seeds is not None:
                if x.dim() < 2 or x.shape[0] != self.seeds:
                    raise ValueError(f"a {self.seeds}-seed network takes [{self.seeds}, *batch, "
                                     f"features] inputs; got {tuple(x.shape)}")
                seed_dims = x.shape[:1]
            batch = x.shape[len(seed_dims):-1]
            x = x.reshape(*seed_dims, *((1,) if self.heads else ()), -1, x.shape[-1])
            n = x.shape[-2]
            x = x.expand(*self.lead, n, x.shape[-1]).reshape(-1, n, x.shape[-1])
            y = self.net(x)
            y = y.reshape(*self.lead, *batch, y.shape[-1])
        return y.squeeze(-1) if self.squeeze else y


def variance_scaling_init(net: MLP, final_scale: float = 1.0) -> MLP:
    """Flax's default_init as OGBench uses it: variance_scaling(scale, 'fan_avg', 'uniform') on
    every weight (uniform in +-sqrt(6 scale / (fan_in + fan_out))), zero biases; the output
    layer with `final_scale` (1e-2 for OGBench's actor means)."""
    linears = [m for m in net.net if isinstance(m, (nn.Linear, EnsembleLinear))]
    with torch.no_grad():
        for i, layer in enumerate(linears):
            scale = final_scale if i == len(linears) - 1 else 1.0
            fan_in, fan_out = ((layer.in_features, layer.out_features) if isinstance(layer, nn.Linear)
                               else layer.weight.shape[-2:])
            bound = math.sqrt(6.0 * scale / (fan_in + fan_out))
            layer.weight.uniform_(-bound, bound)
            layer.bias.zero_()
    return net


def ogbench_mlp(in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False,
                seeds: int | None = None, heads: int | None = None, squeeze: bool = False,
                final_scale: float = 1.0) -> MLP:
    """OGBench's MLP (impls/utils/networks.py): Dense -> GELU -> [LayerNorm] per hidden layer,
    a linear output, variance-scaling init. Flax's gelu is the tanh approximation."""
    return variance_scaling_init(
        MLP(in_dim, hidden, out_dim, layer_norm=layer_norm, seeds=seeds,
            activation=functools.partial(nn.GELU, approximate="tanh"),
            heads=heads, squeeze=squeeze, norm_after_activation=True), final_scale)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std))^2), summed over the last dimension."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class GaussianPolicy(nn.Module):
    """N(mu(s), diag(exp(log_std))^2) with a state-independent log-std clamped to [-5, 2].

    With `seeds=S`, observations are [S, *batch, obs] and each seed has its own log-std.
    `orthogonal_init=g`: jaxrl's NormalTanhPolicy init (orthogonal(g), zero bias, on the hidden
    layers and the mean layer); None keeps PyTorch's default."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], tanh_mean: bool = False,
                 log_std_min: float = -5.0, log_std_max: float = 2.0, seeds: int | None = None,
                 orthogonal_init: float | None = None):
        super().__init__()
        self.mean_net = MLP(obs_dim, hidden, action_dim, seeds=seeds, orthogonal_init=orthogonal_init)
        self.log_std = nn.Parameter(torch.zeros(action_dim) if seeds is None
                                    else torch.zeros(seeds, action_dim))
        self.tanh_mean = tanh_mean
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean_net(obs)
        if self.tanh_mean:
            mean = torch.tanh(mean)
        log_std = self.log_std.clamp(self.log_std_min, self.log_std_max)
        if log_std.dim() == 2:  # [S, A] -> [S, 1, ..., 1, A] against [S, *batch, A]
            log_std = log_std.reshape(log_std.shape[0], *([1] * (mean.dim() - 2)), -1)
        return mean, log_std

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Diagonal-Gaussian log-density, summed over action dimensions."""
        mean, log_std = self(obs)
        return gaussian_log_prob(actions, mean, log_std)

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        mean, log_std = self(obs)
        action = mean if deterministic else mean + torch.randn_like(mean) * log_std.exp()
        return action.clamp(-1.0, 1.0)


class DeterministicPolicy(nn.Module):
    """a = max_action * tanh(mu(s)) (TD3, TD3+BC, BC as CORL writes them). `dropout` and
    `orthogonal_init` as CPL's ContinuousMLPActor (dropout is off in `act`: Agent.act evaluates)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], seeds: int | None = None,
                 max_action: float = 1.0, dropout: float = 0.0, orthogonal_init: float | None = None):
        super().__init__()
        self.net = MLP(obs_dim, hidden, action_dim, seeds=seeds, dropout=dropout,
                       orthogonal_init=orthogonal_init)
        self.max_action = max_action

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.max_action * torch.tanh(self.net(obs))

    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self(obs)


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

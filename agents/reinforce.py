"""REINFORCE on the same simulator: the score-function comparison HDPO is measured against
(Alvo, Russo & Kanoria, arXiv 2306.11246, their REINFORCE baselines).

The policy's orders become the mean of a Gaussian, a_t = (mu_theta(s_t) + sigma eps)^+ with a
learned sigma per ordering location (the environment clips at 0; the log-likelihood is the
unclipped draw's). Nothing is differentiated through the dynamics: with cost-to-go
C_t = sum_{t' >= t} c_t' and a per-period baseline b_t (the batch's mean cost-to-go),

    grad J = 1 / (B T n) sum_b sum_t grad log pi(a_t | s_t) (C_t - b_t).

The reported and test costs are the deterministic policy's (the mean order), as for HDPO.
"""
from __future__ import annotations

import math

import torch

from rlcore.agent.inventory import POLICIES, InventoryAgent, order_sizes, rollout
from rlcore.envs.inventory import Scenarios
from rlcore.registry import register_agent
from rlcore.schema import choice, count, number, optional, positive, sizes


class GaussianOrders(torch.nn.Module):
    """Orders drawn around the wrapped policy's; records each period's log-likelihood."""

    def __init__(self, policy: torch.nn.Module, sizes: dict[str, int], init_std: float):
        super().__init__()
        self.policy = policy
        self.log_std = torch.nn.ParameterDict(
            {key: torch.nn.Parameter(torch.full((n,), math.log(init_std))) for key, n in sizes.items()})
        self.log_probs: list[torch.Tensor] = []

    def forward(self, state: dict) -> dict:
        orders, logp = {}, 0.0
        for key, mean in self.policy(state).items():
            std = self.log_std[key].exp()
            draw = (mean + std * torch.randn_like(mean)).detach()
            logp = logp + torch.distributions.Normal(mean, std).log_prob(draw).sum(1)
            orders[key] = draw.clamp_min(0)
        self.log_probs.append(logp)
        return orders


@register_agent("reinforce")
class Reinforce(InventoryAgent):
    config_schema = {"policy": choice(*POLICIES), "hidden": optional(sizes()), "lr": optional(number(0)),
                     "patience": count(1), "clip_grad_norm": optional(positive()),
                     "init_std": positive(), "baseline": choice("mean", "none")}

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.explore = GaussianOrders(self.policy, order_sizes(self.problem), float(cfg.init_std))
        self.optimizer = torch.optim.Adam(self.explore.parameters(), lr=self.lr)

    def update(self, scenarios: Scenarios) -> dict[str, torch.Tensor]:
        # orders are detached draws: the costs carry no gradient, the log-likelihoods do
        costs = torch.stack([c for _, _, c in rollout(self.explore, self.dynamics, scenarios)])
        log_probs = torch.stack(self.explore.log_probs)        # [T, B], with grad
        self.explore.log_probs.clear()
        to_go = costs.flip(0).cumsum(0).flip(0)
        if self.cfg.baseline == "mean":
            to_go = to_go - to_go.mean(1, keepdim=True)
        surrogate = (log_probs * to_go).mean() / self.problem.n_stores
        grad_norm = self.step(surrogate)
        reported = costs[scenarios.ignore:].mean() / self.problem.n_stores
        return {"loss": costs.mean() / self.problem.n_stores, "cost": reported,
                "grad_norm": grad_norm,
                "std": torch.stack([p.exp().mean() for p in self.explore.log_std.values()]).mean().detach()}

"""HDPO: Hindsight Differentiable Policy Optimization (Alvo, Russo & Kanoria, arXiv 2306.11246;
the authors' trainer.py and loss_functions.py).

Demands are exogenous, so a policy can be backtested on sampled scenarios, and the simulated
cost is differentiable in the policy's parameters through the known dynamics
(rlcore.envs.inventory). For a batch of B training scenarios rolled out over T periods with
autograd on:

    J(theta) = 1 / (B T n) sum_b sum_t sum_stores c_t(s_t, pi_theta(s_t); D_b)   (all T periods)

(`agent.warmup_in_loss=false` sums only the periods after the warm-up: the initial inventory
can hold stock arriving after the lead time, whose transient costs otherwise pull the policy.)

and Adam steps on the pathwise gradient dJ/dtheta (optionally with the gradient norm clipped).
The dev set picks the policy kept (the best dev cost, early stopping after `patience` steps
without improvement) and the test set, drawn with its own seed, reports it, warm-up periods left
out and orders rounded to integers when demand is.
"""
from __future__ import annotations

import torch

from rlcore.agent.inventory import POLICIES, InventoryAgent, rollout
from rlcore.envs.inventory import Scenarios
from rlcore.registry import register_agent
from rlcore.schema import choice, count, flag, number, optional, positive, sizes


@register_agent("hdpo")
class HDPO(InventoryAgent):
    config_schema = {"policy": choice(*POLICIES), "hidden": optional(sizes()), "lr": optional(number(0)),
                     "patience": count(1), "clip_grad_norm": optional(positive()),
                     "warmup_in_loss": flag()}

    def update(self, scenarios: Scenarios) -> dict[str, torch.Tensor]:
        costs = torch.stack([cost for _, _, cost in rollout(self.policy, self.dynamics, scenarios)])
        counted = costs if self.cfg.warmup_in_loss else costs[scenarios.ignore:]
        loss = counted.mean() / self.problem.n_stores        # [T, B] -> per period and store
        grad_norm = self.step(loss)
        reported = costs[scenarios.ignore:].mean().detach() / self.problem.n_stores
        return {"loss": loss.detach(), "cost": reported, "grad_norm": grad_norm}

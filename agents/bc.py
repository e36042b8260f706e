"""BC: behaviour cloning, min_pi E_D ||pi(s) - a||^2 with a deterministic tanh policy (as CORL's
any_percent_bc: 256x256 ReLU, Adam 3e-4, batch 256, normalised states). The floor every
offline agent is compared against.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict

from rlcore.agent import Agent, Spec, apply_gradients, seed_mean
from rlcore.agent.nets import DeterministicPolicy
from rlcore.registry import register_agent


@register_agent("bc")
class BC(Agent):
    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        self.policy = DeterministicPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, seeds=spec.seeds)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        loss = seed_mean((self.policy(batch["observations"]) - batch["actions"]).pow(2))
        params = list(self.policy.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.policy_opt)
        return {"bc_loss": loss.detach()}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy(obs)

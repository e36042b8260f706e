"""P-IQL: preference-based IQL, the two-step baseline of CPL's code (jhejna/cpl
research/algs/piql.py, configs/mw_state_*/piql.yaml; Kim et al.'s Preference Transformer
pipeline with an MLP reward).

1. A reward model r_psi(s, a) is fitted to the labels with the Bradley-Terry likelihood on summed
   rewards: P(sigma2 > sigma1) = sigmoid(sum_t r_psi(s2_t, a2_t) - sum_t r_psi(s1_t, a1_t)),
   binary cross-entropy against the label, for the first `reward_steps` updates (50k), then
   frozen.
2. IQL (the engine's agent, agents/iql.py) learns from the segments' transitions with r_psi as
   their reward, from the first update on (the code trains both at once): each segment of L steps
   gives L - 1 transitions (s_t, a_t, r_psi(s_t, a_t), s_{t+1}), gamma 0.99.

Defaults (mw_state_dense/piql.yaml): expectile 0.7, beta 3 (the code's temperature 0.3333
divides the advantage), Adam 3e-4, 512x512 networks, batch 96 comparisons of 64 steps.
Departure: the code's actor is CPL's deterministic one with dropout, weighted MSE; here it is
IQL's Gaussian actor (jaxrl's), as the engine's IQL has it.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict
from torch.nn import functional as F

from rlcore.agents.iql import IQL
from rlcore.agent import Spec, apply_gradients, seed_mean
from rlcore.agent.nets import MLP
from rlcore.data.preferences import PreferenceAgent
from rlcore.registry import register_agent
from rlcore.schema import count


@register_agent("piql")
class PIQL(PreferenceAgent, IQL):
    config_schema = {"reward_steps": count(0)}

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        self.reward_model = MLP(spec.obs_dim + spec.action_dim, cfg.hidden, 1, seeds=spec.seeds,
                                squeeze=True, orthogonal_init=1.0)
        self.reward_opt = torch.optim.Adam(self.reward_model.parameters(), lr=cfg.reward_lr)

    def phase_starts(self) -> list[int]:
        return [self.cfg.reward_steps]

    def reward(self, batch: TensorDict) -> torch.Tensor:
        return self.reward_model(torch.cat([batch["observations"], batch["actions"]], -1))

    def reward_step(self, batch: TensorDict) -> tuple[torch.Tensor, dict]:
        """One Bradley-Terry step on the labels; the rewards it predicted (detached)."""
        reward = self.reward(batch)                                        # [S, B, 2, L]
        returns = reward.sum(-1)
        logits = returns[..., 1] - returns[..., 0]
        labels = batch["labels"]
        loss = seed_mean(F.binary_cross_entropy_with_logits(logits, labels, reduction="none"))
        params = list(self.reward_model.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.reward_opt)
        accuracy = seed_mean(((logits > 0) == torch.round(labels)).float())
        return reward.detach(), {"reward_loss": loss.detach(), "reward_accuracy": accuracy}

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        if self.phase == 0:
            reward, metrics = self.reward_step(batch)
        else:
            with torch.no_grad():
                reward, metrics = self.reward(batch), {}
        seeds = batch.batch_size[0]

        def steps(x: torch.Tensor, last: bool = False) -> torch.Tensor:   # [S, B, 2, L, ...] ->
            x = x[:, :, :, 1:] if last else x[:, :, :, :-1]                  # [S, B * 2 * (L-1), ...]
            return x.reshape(seeds, -1, *x.shape[4:])
        transitions = TensorDict({
            "observations": steps(batch["observations"]), "actions": steps(batch["actions"]),
            "rewards": steps(reward), "next_observations": steps(batch["observations"], last=True),
            "terminals": steps(batch["terminals"])}, batch_size=[seeds])
        return {**IQL.update(self, transitions), **metrics}

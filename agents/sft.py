"""SFT and BC, the supervised baselines of CPL's code (jhejna/cpl research/algs/bc.py,
configs/mw_state_*/sft.yaml): min_pi E ||pi(s) - a||^2 (summed over action dims, the mean over
the segments' steps) with CPL's actor ([512, 512], dropout 0.25, tanh output, Adam 1e-4).

- `sft`: BC on every segment for `bc_all_steps` (200k), then only on the preferred segment of
  each comparison (both on a tie): supervised fine-tuning on what the labels favour.
- `bc_all`: BC on every segment throughout (the "BC on all data" reference).
"""
from __future__ import annotations

import torch
from tensordict import TensorDict

from rlcore.agent import Spec, apply_gradients, seed_mean
from rlcore.data.preferences import PreferenceAgent, preference_policy, preferred_mean, segment_log_prob
from rlcore.registry import register_agent
from rlcore.schema import count, number


@register_agent("sft")
class SFT(PreferenceAgent):
    config_schema = {"bc_all_steps": count(0), "dropout": number(0, 1, high_open=True)}
    positives_only = True

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        self.policy = preference_policy(spec, cfg)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)

    def phase_starts(self) -> list[int]:
        return [self.cfg.bc_all_steps] if self.positives_only else []

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        squared_error = -segment_log_prob(self.policy, batch)                # [S, B, 2, L]
        if self.phase == 0:
            loss = seed_mean(squared_error)
        else:
            loss = preferred_mean(squared_error, batch["labels"])
        params = list(self.policy.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.policy_opt)
        return {"bc_loss": loss.detach()}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy(obs)


@register_agent("bc_all")
class BCAll(SFT):
    positives_only = False

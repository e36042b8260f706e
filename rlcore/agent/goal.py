"""What goal-conditioned agents share: batches with goals, acting toward a goal, OGBench's actor.

A goal-conditioned agent is built from a Spec whose goal_dim is the goal's size (OGBench's goals
are states: goal_dim = obs_dim), draws its batches from the buffer's GoalSampler (rlcore.data.goals)
with the goal mixes of its config (`value_goals`, `actor_goals`), and acts with
`act(obs, goals=...)`. Its evaluation is the goal evaluator's success rate (rlcore.evaluation).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from tensordict import TensorDict
from torch import nn

from rlcore.agent import Agent, Spec
from rlcore.training.buffer import Buffer
from rlcore.data.goals import GoalMix, GoalSampler
from rlcore.agent.nets import ogbench_mlp
from rlcore.schema import flag, fraction

GOAL_MIX_RULES = {f"{kind}_goals.{key}": fraction() for kind in ("value", "actor")
                  for key in ("current", "trajectory", "random")}
GOAL_MIX_RULES.update({f"{kind}_goals.geometric": flag() for kind in ("value", "actor")})


class GoalAgent(Agent):
    goal_conditioned = True
    config_schema = GOAL_MIX_RULES

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        if spec.goal_dim <= 0:
            raise ValueError(f"{type(self).__name__} is goal-conditioned: its Spec needs goal_dim > 0")
        self.value_goals = GoalMix.from_config(cfg.value_goals) if "value_goals" in cfg else None
        self.actor_goals = GoalMix.from_config(cfg.actor_goals) if "actor_goals" in cfg else None

    # -- data ---------------------------------------------------------------------------------
    def goal_sampler(self, buffer: Buffer) -> GoalSampler:
        """The buffer's sampler (the trainer attaches one with data.augment); a plain one else."""
        if getattr(buffer, "goals", None) is None:
            buffer.goals = GoalSampler(buffer, float(self.cfg.get("discount", 0.99)))
        return buffer.goals

    def draw(self, sampler: GoalSampler, n: int) -> TensorDict:
        """n transitions with goals (OGBench's GCDataset by default)."""
        return sampler.sample(n, self.value_goals, self.actor_goals)

    def sample(self, buffer: Buffer, batch_size: int) -> TensorDict:
        batch = self.draw(self.goal_sampler(buffer), self.spec.seeds * batch_size)
        return batch.reshape(self.spec.seeds, batch_size)

    # -- acting -------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True,
            goals: torch.Tensor | None = None) -> torch.Tensor:
        if goals is None:
            raise ValueError(f"{type(self).__name__} is goal-conditioned: act(obs, goals=...)")
        return self.policy_action(obs, goals, deterministic)

    def policy_action(self, obs: torch.Tensor, goals: torch.Tensor,   # type: ignore[override]
                      deterministic: bool) -> torch.Tensor:
        raise NotImplementedError


class GoalActor(nn.Module):
    """OGBench's GCActor (impls/utils/networks.py) for state inputs: an MLP on [s || g] (GELU,
    no layer norm) to the mean of N(mu, diag(sigma^2)); `const_std` fixes sigma = 1 (OGBench's
    default), else a state-independent log-std (zeros at init, clipped to [-5, 2]). The output
    layer starts at 1e-2 scale. Acting uses the mean (OGBench evaluates at temperature 0),
    clipped to [-1, 1]."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int], seeds: int,
                 const_std: bool = True):
        super().__init__()
        self.net = ogbench_mlp(in_dim, hidden, out_dim, seeds=seeds, final_scale=1e-2)
        self.log_std = None if const_std else nn.Parameter(torch.zeros(seeds, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def log_prob(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mean = self.net(x)
        z = target - mean
        if self.log_std is None:
            return -0.5 * z.pow(2).sum(-1) - 0.5 * mean.shape[-1] * math.log(2 * math.pi)
        log_std = self.log_std.clamp(-5.0, 2.0).reshape(mean.shape[0], *([1] * (mean.dim() - 2)), -1)
        return (-0.5 * (z * torch.exp(-log_std)).pow(2) - log_std
                - 0.5 * math.log(2 * math.pi)).sum(-1)


def goal_input(obs: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
    """[s || g], the input of every goal-conditioned network here."""
    return torch.cat([obs, goals], dim=-1)

"""HIQL: hierarchical implicit Q-learning (Park, Ghosh, Eysenbach, Levine, NeurIPS 2023), as
OGBench runs it (impls/agents/hiql.py). One goal-conditioned value function, two policies
extracted from it:

- a subgoal representation phi([s; g]) (MLP 512x512x512 -> 10, layer norm, then length-
  normalised to sqrt(10)), trained only through the value V(s, g) = V(s, phi([s; g])), whose
  loss is GCIVL's (expectile 0.7; rlcore.agents.gcivl.ivl_value_loss);
- a high-level policy pi_h(z | s, g) over representations, cloned toward z = phi([s; s_{t+k}])
  of the state k = subgoal_steps ahead (capped at the high goal), AWR-weighted by
  A_h = V(s_{t+k}, g) - V(s, g) with temperature high_alpha;
- a low-level policy pi_l(a | s, z) toward the subgoal w = s_{t+k} (z = phi([s; w]), no gradient
  into phi for state inputs), AWR-weighted by A_l = V(s', w) - V(s, w) with low_alpha.
One Adam step on the sum of the three losses, then Polyak averaging of the target value's
heads. The target value reads the online phi: OGBench's target module shares the one goal_rep
module (flax binds a shared module once) and only the value heads are copied and averaged.
Acting: z = the high policy's mean, length-normalised, then the low policy's mean.
subgoal_steps 25 (10 on cube-single), alpha 3 for both; batch 1024, lr 3e-4.
"""
from __future__ import annotations

import copy
import math

import torch
from tensordict import TensorDict

from rlcore.agent import apply_gradients, grads_by_group, seed_mean
from rlcore.agent.goal import GoalActor, GoalAgent, goal_input
from rlcore.agent.nets import ogbench_mlp, polyak_update
from rlcore.registry import register_agent
from rlcore.schema import count, flag, positive

from rlcore.agents.gcivl import awr_goal_loss, ivl_value_loss


def length_normalize(x: torch.Tensor) -> torch.Tensor:
    """x / ||x|| * sqrt(dim) (OGBench's LengthNormalize)."""
    return x / x.norm(dim=-1, keepdim=True) * math.sqrt(x.shape[-1])


@register_agent("hiql")
class HIQL(GoalAgent):
    config_schema = {**GoalAgent.config_schema, "const_std": flag(), "subgoal_steps": count(1),
                     "rep_dim": count(1), "low_alpha": positive(), "high_alpha": positive()}

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        S, obs = spec.seeds, spec.obs_dim
        self.goal_rep = ogbench_mlp(obs + spec.goal_dim, cfg.value_hidden, cfg.rep_dim,
                                    layer_norm=cfg.layer_norm, seeds=S)
        self.value_heads = ogbench_mlp(obs + cfg.rep_dim, cfg.value_hidden, 1,
                                       layer_norm=cfg.layer_norm, seeds=S, heads=2, squeeze=True)
        self.target_value_heads = copy.deepcopy(self.value_heads).requires_grad_(False)
        self.low_actor = GoalActor(obs + cfg.rep_dim, spec.action_dim, cfg.actor_hidden, S, cfg.const_std)
        self.high_actor = GoalActor(obs + spec.goal_dim, cfg.rep_dim, cfg.actor_hidden, S, cfg.const_std)
        self.opt = torch.optim.Adam([*self.goal_rep.parameters(), *self.value_heads.parameters(),
                                     *self.low_actor.parameters(), *self.high_actor.parameters()],
                                    lr=cfg.lr)

    def draw(self, sampler, n: int) -> TensorDict:
        return sampler.sample_hierarchical(n, self.value_goals, self.actor_goals, self.cfg.subgoal_steps)

    def phi(self, s, g):
        return length_normalize(self.goal_rep(goal_input(s, g)))

    def value(self, s, g):
        return self.value_heads(goal_input(s, self.phi(s, g)))

    def target_value(self, s, g):
        return self.target_value_heads(goal_input(s, self.phi(s, g)))

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        s, s_next = batch["observations"], batch["next_observations"]
        value_loss, v = ivl_value_loss(self.value, self.target_value, batch, cfg.discount, cfg.expectile)

        w, g, target = batch["low_actor_goals"], batch["high_actor_goals"], batch["high_actor_targets"]
        with torch.no_grad():
            low_adv = self.value(s_next, w).mean(1) - self.value(s, w).mean(1)
            high_adv = self.value(target, g).mean(1) - self.value(s, g).mean(1)
            z_low, z_target = self.phi(s, w), self.phi(s, target)
        low_loss = awr_goal_loss(self.low_actor, goal_input(s, z_low), batch["actions"], low_adv,
                                 cfg.low_alpha)
        high_loss = awr_goal_loss(self.high_actor, goal_input(s, g), z_target, high_adv, cfg.high_alpha)

        apply_gradients(*grads_by_group([
            (value_loss, [*self.goal_rep.parameters(), *self.value_heads.parameters()]),
            (low_loss, self.low_actor.parameters()), (high_loss, self.high_actor.parameters())]),
            self.opt)
        polyak_update(self.target_value_heads, self.value_heads, cfg.tau)
        return {"value_loss": value_loss.detach(), "low_actor_loss": low_loss.detach(),
                "high_actor_loss": high_loss.detach(), "v_mean": seed_mean(v)}

    def policy_action(self, obs, goals, deterministic: bool) -> torch.Tensor:
        z = length_normalize(self.high_actor(goal_input(obs, goals)))
        return self.low_actor(goal_input(obs, z)).clamp(-1.0, 1.0)

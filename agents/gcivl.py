"""GCIVL: goal-conditioned implicit V-learning, OGBench's value-only variant of GCIQL
(impls/agents/gcivl.py). One Adam step on the sum of the two losses, both at the current
parameters, then Polyak averaging of the target V (tau 0.005).

Value (IQL's expectile regression with OGBench's double-DQN-style split: the weight from the
target network's advantage, the regression on the online one), over value goals g:
    q_k   = r + gamma m Vbar_k(s', g),   adv = r + gamma m min_k Vbar_k(s', g) - mean_k Vbar_k(s, g)
    L_V   = sum_k E[ |tau - 1(adv < 0)| (q_k - V_k(s, g))^2 ]
with r = 1(s == g) - 1 and m = 1 - 1(s == g) from the goal sampler, tau 0.9.
Actor (AWR on the value's one-step advantage), over actor goals g:
    A = mean_k V_k(s', g) - mean_k V_k(s, g),   L_pi = -E[ min(exp(alpha A), 100) log pi(a | s, g) ]
with alpha 10. Networks 512x512x512 GELU, layer norm in V; goals: value current/trajectory/
random 0.2/0.5/0.3 (geometric), actor 0/1/0 (0/0.5/0.5 on stitch data), batch 1024, lr 3e-4.
"""
from __future__ import annotations

import copy

import torch
from tensordict import TensorDict

from rlcore.agent import apply_gradients, grads_by_group, seed_mean
from rlcore.agent.goal import GoalActor, GoalAgent, goal_input
from rlcore.agent.nets import ogbench_mlp, polyak_update
from rlcore.registry import register_agent
from rlcore.schema import flag


def ogbench_weighted_expectile(adv: torch.Tensor, diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """|tau - 1(adv < 0)| diff^2 (OGBench's expectile_loss: the weight's sign from adv)."""
    return torch.where(adv >= 0, expectile, 1.0 - expectile) * diff.pow(2)


def ivl_value_loss(value, target_value, batch: TensorDict, discount: float,
                   expectile: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GCIVL's and HIQL's value loss (above) per seed; `value(s, g)` and `target_value(s, g)`
    give [S, 2, B]. Also the online V's mean over heads."""
    s, s_next, g = batch["observations"], batch["next_observations"], batch["value_goals"]
    r, m = batch["rewards"][:, None], batch["masks"][:, None]                  # [S, 1, B]
    with torch.no_grad():
        next_v_t = target_value(s_next, g)                                     # [S, 2, B]
        q = r + discount * m * next_v_t                                        # q_k
        adv = (r + discount * m * next_v_t.min(1, keepdim=True).values
               - target_value(s, g).mean(1, keepdim=True))
    v = value(s, g)
    loss = 2 * seed_mean(ogbench_weighted_expectile(adv, q - v, expectile))   # sum over heads
    return loss, v.detach().mean(1)


def awr_goal_loss(actor, x, targets, advantage, alpha: float) -> torch.Tensor:
    """-E[min(exp(alpha A), 100) log pi(targets | x)] per seed (OGBench's AWR actors)."""
    weight = torch.exp(alpha * advantage).clamp_max(100.0)
    return -seed_mean(weight * actor.log_prob(x, targets))


@register_agent("gcivl")
class GCIVL(GoalAgent):
    config_schema = {**GoalAgent.config_schema, "const_std": flag()}

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.value_net = ogbench_mlp(spec.obs_dim + spec.goal_dim, cfg.value_hidden, 1,
                                     layer_norm=cfg.layer_norm, seeds=spec.seeds, heads=2, squeeze=True)
        self.target_value_net = copy.deepcopy(self.value_net).requires_grad_(False)
        self.actor = GoalActor(spec.obs_dim + spec.goal_dim, spec.action_dim, cfg.actor_hidden,
                               spec.seeds, cfg.const_std)
        self.opt = torch.optim.Adam([*self.value_net.parameters(), *self.actor.parameters()], lr=cfg.lr)

    def value(self, s, g):
        return self.value_net(goal_input(s, g))

    def target_value(self, s, g):
        return self.target_value_net(goal_input(s, g))

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        value_loss, v = ivl_value_loss(self.value, self.target_value, batch, cfg.discount, cfg.expectile)
        s, g = batch["observations"], batch["actor_goals"]
        with torch.no_grad():
            advantage = self.value(batch["next_observations"], g).mean(1) - self.value(s, g).mean(1)
        actor_loss = awr_goal_loss(self.actor, goal_input(s, g), batch["actions"], advantage, cfg.alpha)
        apply_gradients(*grads_by_group([(value_loss, self.value_net.parameters()),
                                         (actor_loss, self.actor.parameters())]), self.opt)
        polyak_update(self.target_value_net, self.value_net, cfg.tau)
        return {"value_loss": value_loss.detach(), "actor_loss": actor_loss.detach(),
                "v_mean": seed_mean(v), "advantage_mean": seed_mean(advantage)}

    def policy_action(self, obs, goals, deterministic: bool) -> torch.Tensor:
        return self.actor(goal_input(obs, goals)).clamp(-1.0, 1.0)

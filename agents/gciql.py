"""GCIQL: goal-conditioned implicit Q-learning as OGBench runs it (impls/agents/gciql.py). One
Adam step on the sum of three losses, all at the current parameters, then Polyak averaging of
the target critic (tau 0.005). Over value goals g, with r = 1(s == g) - 1 and m = 1 - 1(s == g):
    L_V = E[ |tau - 1(u < 0)| u^2 ],  u = min_k Qbar_k(s, a, g) - V(s, g)          (tau 0.9)
    L_Q = sum_k E[ (r + gamma m V(s', g) - Q_k(s, a, g))^2 ]
Actor over actor goals g, DDPG+BC (OGBench's default, `actor_loss: ddpgbc`):
    L_pi = -E[min_k Q_k(s, clip(mu(s, g)), g)] / sg(E|Q|) - alpha E[log pi(a | s, g)]
(the Q term normalised by its mean magnitude; alpha the BC weight, per dataset: 0.003 on
pointmaze, 1.0 on cube-single-play, 0.03 on cube-single-noisy), or AWR with
A = min_k Q_k(s, a, g) - V(s, g) and temperature alpha (`actor_loss: awr`).
Networks 512x512x512 GELU, layer norm in Q and V; batch 1024, lr 3e-4.
"""
from __future__ import annotations

import copy

import torch
from tensordict import TensorDict

from rlcore.agent import apply_gradients, grads_by_group, seed_mean
from rlcore.agent.goal import GoalActor, GoalAgent, goal_input
from rlcore.agent.nets import ogbench_mlp, polyak_update
from rlcore.agent.objectives import expectile_loss
from rlcore.registry import register_agent
from rlcore.schema import choice, flag

from rlcore.agents.gcivl import awr_goal_loss


@register_agent("gciql")
class GCIQL(GoalAgent):
    config_schema = {**GoalAgent.config_schema, "const_std": flag(),
                     "actor_loss": choice("ddpgbc", "awr")}

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        sg = spec.obs_dim + spec.goal_dim
        self.value_net = ogbench_mlp(sg, cfg.value_hidden, 1, layer_norm=cfg.layer_norm,
                                     seeds=spec.seeds, squeeze=True)
        self.critic = ogbench_mlp(sg + spec.action_dim, cfg.value_hidden, 1, layer_norm=cfg.layer_norm,
                                  seeds=spec.seeds, heads=2, squeeze=True)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = GoalActor(sg, spec.action_dim, cfg.actor_hidden, spec.seeds, cfg.const_std)
        self.opt = torch.optim.Adam([*self.value_net.parameters(), *self.critic.parameters(),
                                     *self.actor.parameters()], lr=cfg.lr)

    def q(self, critic, s, g, a):
        return critic(torch.cat([s, g, a], dim=-1))                            # [S, 2, B]

    def actor_loss(self, s, g, a) -> torch.Tensor:
        x = goal_input(s, g)
        if self.cfg.actor_loss == "awr":
            with torch.no_grad():
                advantage = self.q(self.critic, s, g, a).min(1).values - self.value_net(x)
            return awr_goal_loss(self.actor, x, a, advantage, self.cfg.alpha)
        q = self.q(self.critic, s, g, self.actor(x).clamp(-1.0, 1.0)).min(1).values   # [S, B]
        q_loss = -seed_mean(q) / (seed_mean(q.abs()).detach() + 1e-6)
        return q_loss - self.cfg.alpha * seed_mean(self.actor.log_prob(x, a))

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        s, a, g = batch["observations"], batch["actions"], batch["value_goals"]
        with torch.no_grad():
            q_target = self.q(self.target_critic, s, g, a).min(1).values
            y = batch["rewards"] + cfg.discount * batch["masks"] * self.value_net(
                goal_input(batch["next_observations"], g))
        v = self.value_net(goal_input(s, g))
        value_loss = seed_mean(expectile_loss(q_target - v, cfg.expectile))
        critic_loss = 2 * seed_mean((self.q(self.critic, s, g, a) - y[:, None]).pow(2))
        actor_loss = self.actor_loss(s, batch["actor_goals"], a)
        apply_gradients(*grads_by_group([(value_loss, self.value_net.parameters()),
                                         (critic_loss, self.critic.parameters()),
                                         (actor_loss, self.actor.parameters())]), self.opt)
        polyak_update(self.target_critic, self.critic, cfg.tau)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "actor_loss": actor_loss.detach(), "v_mean": seed_mean(v.detach())}

    def policy_action(self, obs, goals, deterministic: bool) -> torch.Tensor:
        return self.actor(goal_input(obs, goals)).clamp(-1.0, 1.0)

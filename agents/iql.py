"""IQL: Implicit Q-Learning (Kostrikov, Nair, Levine, ICLR 2022), in the order CORL's iql.py
runs it, with its MuJoCo settings.

    V:  L_V = E_D[ L_2^tau(min_k Qbar_k(s, a) - V(s)) ],  L_2^tau(u) = |tau - 1(u < 0)| u^2   (eq. 5)
    Q:  L_Q = mean_k E_D[ (r + gamma (1 - d) V(s') - Q_k(s, a))^2 ]                        (eq. 6)
    pi: L_pi = E_D[ min(exp(beta (min_k Qbar_k(s, a) - V(s))), 100) * -log pi(a|s) ]        (eq. 7)
V(s') is read before V's step and the advantage uses V before its step (CORL's order); the
target critic is Polyak-averaged (tau 0.005). The actor is a Gaussian with a tanh mean and a
state-independent log-std (clamped to [-20, 2] as CORL), its learning rate cosine-decayed over
the run. Expectile 0.7, beta 3.0; rewards r * 1000 / (max - min episode return) on MuJoCo.
"""
from __future__ import annotations

import copy

import torch
from tensordict import TensorDict

from rlcore.agent import Agent, Spec, apply_gradients, seed_mean
from rlcore.nets import MLP, GaussianPolicy, polyak_update
from rlcore.objectives import awr_weight, cosine_scale, effective_batch_share, expectile_loss
from rlcore.registry import register_agent


@register_agent("iql")
class IQL(Agent):
    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        self.critic = MLP(spec.obs_dim + spec.action_dim, cfg.hidden, 1, seeds=spec.seeds, heads=2,
                          squeeze=True)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = MLP(spec.obs_dim, cfg.hidden, 1, seeds=spec.seeds, squeeze=True)
        self.policy = GaussianPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, tanh_mean=True,
                                     log_std_min=-20.0, seeds=spec.seeds)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.value_lr)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.actor_lr)
        self.register_buffer("step", torch.zeros(()))

    def q(self, critic, s, a):
        return critic(torch.cat([s, a], dim=-1))                           # [S, 2, B]

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        s, a = batch["observations"], batch["actions"]
        with torch.no_grad():
            q_target = self.q(self.target_critic, s, a).min(1).values      # [S, B]
            v_next = self.value(batch["next_observations"])
        v = self.value(s)
        advantage = q_target - v
        value_loss = seed_mean(expectile_loss(advantage, cfg.expectile))
        params = list(self.value.parameters())
        apply_gradients(params, torch.autograd.grad(value_loss.sum(), params), self.value_opt)

        y = batch["rewards"] + cfg.discount * (1 - batch["terminals"]) * v_next
        critic_loss = seed_mean((self.q(self.critic, s, a) - y[:, None]).pow(2))
        params = list(self.critic.parameters())
        apply_gradients(params, torch.autograd.grad(critic_loss.sum(), params), self.critic_opt)

        weight = awr_weight(advantage, cfg.beta, cfg.weight_clip)
        policy_loss = seed_mean(weight * -self.policy.log_prob(s, a))
        params = list(self.policy.parameters())
        self.step += 1
        apply_gradients(params, torch.autograd.grad(policy_loss.sum(), params), self.policy_opt,
                        cosine_scale(self.step - 1, cfg.lr_decay_steps) if cfg.lr_decay_steps else None)
        polyak_update(self.target_critic, self.critic, cfg.tau)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "policy_loss": policy_loss.detach(), "advantage_mean": seed_mean(advantage.detach()),
                "weight_ess": effective_batch_share(weight)}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy.act(obs, deterministic)

"""SAC: soft actor-critic with a learned temperature (Haarnoja et al., 2018, "Soft Actor-Critic
Algorithms and Applications"). Online; rlcore uses it to train D4RL-style behaviour policies.

Critics (twin, soft Bellman backup with the target critics):
    y = r + gamma (1 - d) [ min_k Qbar_k(s', a') - alpha log pi(a'|s') ],  a' ~ pi(.|s')
    L_Q = sum_k E (Q_k(s, a) - y)^2
Actor (reparameterised):      L_pi = E_s [ alpha log pi(a|s) - min_k Q_k(s, a) ],  a ~ pi(.|s)
Temperature (target entropy H = -|A|):   L_alpha = -E[ log alpha (log pi(a|s) + H) ]
Target critics by Polyak averaging (tau). Hyperparameters as in the paper's Table 1
(256x256, Adam 3e-4, batch 256, tau 0.005, gamma 0.99) with random actions for the first
`start_steps` steps as in SpinningUp and CleanRL.
"""
from __future__ import annotations

import copy

import torch
from tensordict import TensorDict

from rlcore.agent import Agent, Spec, apply_gradients
from rlcore.agent.nets import MLP, TanhGaussianPolicy, polyak_update
from rlcore.registry import register_agent
from rlcore.schema import count, number


@register_agent("sac")
class SAC(Agent):
    config_schema = {"init_log_alpha": number(), "buffer_size": count(1), "start_steps": count(0),
                     "update_after": count(1)}
    multi_seed = False  # online: one environment stream and buffer per process

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        self.critic = MLP(spec.obs_dim + spec.action_dim, cfg.hidden, 1, ensemble=2, squeeze=True)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = TanhGaussianPolicy(spec.obs_dim, spec.action_dim, cfg.hidden)
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(cfg.init_log_alpha)))
        self.target_entropy = -float(spec.action_dim)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)

    def q(self, critic, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([s, a], dim=-1))                           # [2, B]

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        s, a, r = batch["observations"], batch["actions"], batch["rewards"]
        s_next, done = batch["next_observations"], batch["terminals"]
        alpha = self.log_alpha.exp().detach()

        with torch.no_grad():                                              # soft Bellman target
            a_next, logp_next = self.actor.sample(s_next)
            q_next = self.q(self.target_critic, s_next, a_next).min(0).values
            y = r + self.cfg.discount * (1 - done) * (q_next - alpha * logp_next)
        critic_loss = (self.q(self.critic, s, a) - y).pow(2).mean(1).sum()
        critic_params = list(self.critic.parameters())
        apply_gradients(critic_params, torch.autograd.grad(critic_loss, critic_params),
                        self.critic_opt)

        a_pi, logp = self.actor.sample(s)                                  # reparameterised
        actor_loss = (alpha * logp - self.q(self.critic, s, a_pi).min(0).values).mean()
        actor_params = list(self.actor.parameters())
        apply_gradients(actor_params, torch.autograd.grad(actor_loss, actor_params), self.actor_opt)

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        apply_gradients([self.log_alpha], torch.autograd.grad(alpha_loss, [self.log_alpha]),
                        self.alpha_opt)
        polyak_update(self.target_critic, self.critic, self.cfg.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "alpha_loss": alpha_loss.detach(), "alpha": alpha, "entropy": -logp.detach().mean()}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor.act(obs, deterministic)

"""TD3+BC (Fujimoto & Gu, NeurIPS 2021, "A Minimalist Approach to Offline RL"), as the
authors' TD3_BC.py and CORL write it.

Critics (TD3, twin, target policy smoothing):
    a' = clip(pi'(s') + clip(N(0, 0.2^2), +-0.5), +-1),  y = r + gamma (1 - d) min_k Q'_k(s', a')
    L_Q = sum_k E (Q_k(s, a) - y)^2
Actor, every `policy_freq` updates (eq. 3):
    L_pi = -lambda E Q_1(s, pi(s)) + E (pi(s) - a)^2,   lambda = alpha / E|Q_1(s, pi(s))| (detached)
then Polyak updates of both targets. States are normalised (mean/std over the dataset).
The delayed actor update alternates on a Python counter: under torch.compile that is a few
cached graphs (one per phase), not a recompile per step.
"""
from __future__ import annotations

import copy

import torch
from tensordict import TensorDict

from rlcore.agent import Agent, DelayedActorUpdates, Spec, apply_gradients, seed_mean
from rlcore.agent.nets import MLP, DeterministicPolicy
from rlcore.agent.objectives import smoothed_target_action
from rlcore.registry import register_agent


@register_agent("td3bc")
class TD3BC(DelayedActorUpdates, Agent):
    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        self.critic = MLP(spec.obs_dim + spec.action_dim, cfg.hidden, 1, seeds=spec.seeds, heads=2,
                          squeeze=True)                                   # Q: [S, 2, B]
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = DeterministicPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, seeds=spec.seeds)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)

    def q(self, critic, s, a):
        return critic(torch.cat([s, a], dim=-1))

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        s, a, r = batch["observations"], batch["actions"], batch["rewards"]
        with torch.no_grad():
            a_next = smoothed_target_action(self.target_actor, batch["next_observations"],
                                            cfg.policy_noise, cfg.noise_clip)
            q_next = self.q(self.target_critic, batch["next_observations"], a_next).min(1).values
            y = r + cfg.discount * (1 - batch["terminals"]) * q_next       # [S, B]
        critic_loss = 2 * seed_mean((self.q(self.critic, s, a) - y[:, None]).pow(2))  # sum of 2 MSEs
        params = list(self.critic.parameters())
        apply_gradients(params, torch.autograd.grad(critic_loss.sum(), params), self.critic_opt)
        metrics = {"critic_loss": critic_loss.detach()}
        self.delayed_actor_step(metrics, s, a)
        return metrics

    def actor_loss(self, s, a) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_pi, its BC term, lambda) per seed."""
        pi = self.actor(s)
        q = self.q(self.critic, s, pi)[:, 0]                                # Q_1: [S, B]
        lam = self.cfg.alpha / q.abs().mean(1).detach()                    # per seed
        bc = seed_mean((pi - a).pow(2))
        return -lam * seed_mean(q) + bc, bc, lam

    def update_actor(self, s, a) -> dict[str, torch.Tensor]:
        loss, bc, lam = self.actor_loss(s, a)
        params = list(self.actor.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.actor_opt)
        return {"actor_loss": loss.detach(), "bc_loss": bc.detach(), "lambda": lam}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(obs)

"""A2PR: adaptive advantage-guided policy regularization (Liu, Li, Lan, Gao, Pan, Xu, ICML 2024,
"Adaptive Advantage-Guided Policy Regularization for Offline Reinforcement Learning"), as the
authors' A2PR.py computes it: TD3+BC whose BC target is chosen by advantage between the data's
action and a VAE's reconstruction of the policy's action.

Per update (V is read once, before its own step, and used by the VAE and the actor):
1. Critic (TD3): a' = clip(pi'(s') + clip(N(0, 0.2^2), +-0.5), +-1),
       y = r + gamma (1 - d) min_k Q'_k(s', a'),   L_Q = sum_k E (Q_k(s, a) - y)^2.
2. Value of the current policy: y_V = min(y, r + gamma (1 - d) min_k Q_k(s', a')) with the
   just-updated critic,   L_V = E (V(s) - y_V)^2.
3. Augmented behaviour policy, a VAE trained on the good actions only:
       m = 1[Q_1(s, a) > V(s)],  L_VAE = E[w_vae m ||a_hat - a||^2] + 0.5 KL(N(mu, sigma) || N(0, I)).
4. Actor, every `policy_freq` updates:
       lambda = alpha / E|Q_1(s, pi(s))|,  a_gen = VAE(s, pi(s)),
       A_data = Q_1(s, a) - V(s),  A_gen = Q_1(s, a_gen) - V(s),
       a* = a_gen if A_gen >= A_data else a,
       M = mask (1[Q_1(s, a_gen) >= V(s)] OR 1[Q_1(s, a) > V(s)]),   in {0, mask}
       L_pi = -lambda E Q_1(s, pi(s)) + E[M ||pi(s) - a*||^2],
   then Polyak updates of both targets (tau 0.005).
The authors write M as `mask * (adv_pi + adv_action)` on two bool tensors, which PyTorch adds
as a logical OR, so M is never 2 mask. As in the authors' code, a* keeps its graph: the BC
term's gradient also flows through a_gen = VAE(s, pi(s)) back into pi. Networks: actor 3x256,
twin critic and V 4x256, VAE 750x750 with a 2|A| latent (log-std clamped to [-4, 15]); Adam
3e-4, the VAE 1e-3.
Per-dataset alpha / mask / VAE weight / discount from the authors' README (hopper-medium runs
with `--discount 0.995`, the flag utils/config.py passes to the agent); states normalised.
"""
from __future__ import annotations

import copy

import torch
from tensordict import TensorDict
from torch import nn

from rlcore.agent import Agent, DelayedActorUpdates, Spec, apply_gradients, seed_mean
from rlcore.agent.nets import MLP, DeterministicPolicy
from rlcore.agent.objectives import smoothed_target_action
from rlcore.registry import register_agent
from rlcore.schema import number


class VAE(nn.Module):
    """Conditional VAE over actions (BCQ's): encoder (s, a) -> (mu, sigma), decoder (s, z) -> a."""

    def __init__(self, obs_dim: int, action_dim: int, hidden, seeds: int | None = None):
        super().__init__()
        self.latent_dim = 2 * action_dim
        self.encoder = MLP(obs_dim + action_dim, hidden, 2 * self.latent_dim, seeds=seeds)
        self.decoder = MLP(obs_dim + self.latent_dim, hidden, action_dim, seeds=seeds)

    def forward(self, s: torch.Tensor, a: torch.Tensor):
        mean, log_std = self.encoder(torch.cat([s, a], -1)).chunk(2, dim=-1)
        std = log_std.clamp(-4, 15).exp()
        z = mean + std * torch.randn_like(std)
        return self.decode(s, z), mean, std

    def decode(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(torch.cat([s, z], -1)))


@register_agent("a2pr")
class A2PR(DelayedActorUpdates, Agent):
    config_schema = {"mask": number(0), "vae_weight": number(0)}

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        S = spec.seeds
        self.critic = MLP(spec.obs_dim + spec.action_dim, cfg.critic_hidden, 1, seeds=S, heads=2,
                          squeeze=True)                                   # Q: [S, 2, B]
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = MLP(spec.obs_dim, cfg.critic_hidden, 1, seeds=S, squeeze=True)
        self.actor = DeterministicPolicy(spec.obs_dim, spec.action_dim, cfg.actor_hidden, seeds=S)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.vae = VAE(spec.obs_dim, spec.action_dim, cfg.vae_hidden, seeds=S)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.value_lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.vae_opt = torch.optim.Adam(self.vae.parameters(), lr=cfg.vae_lr)

    def q(self, critic, s, a) -> torch.Tensor:
        return critic(torch.cat([s, a], dim=-1))

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        s, a, r = batch["observations"], batch["actions"], batch["rewards"]
        s_next, not_done = batch["next_observations"], 1 - batch["terminals"]
        # 1. critic
        with torch.no_grad():
            a_next = smoothed_target_action(self.target_actor, s_next, cfg.policy_noise, cfg.noise_clip)
            y = r + cfg.discount * not_done * self.q(self.target_critic, s_next, a_next).min(1).values
        critic_loss = 2 * seed_mean((self.q(self.critic, s, a) - y[:, None]).pow(2))
        params = list(self.critic.parameters())
        apply_gradients(params, torch.autograd.grad(critic_loss.sum(), params), self.critic_opt)
        # 2. value of the current policy, against the updated critic
        with torch.no_grad():
            y_online = r + cfg.discount * not_done * self.q(self.critic, s_next, a_next).min(1).values
            y_value = torch.minimum(y_online, y)
        v = self.value(s)
        value_loss = seed_mean((v - y_value).pow(2))
        params = list(self.value.parameters())
        apply_gradients(params, torch.autograd.grad(value_loss.sum(), params), self.value_opt)
        v = v.detach()                                                      # V before its step
        # 3. VAE on the actions whose Q beats V
        recon, mean, std = self.vae(s, a)
        with torch.no_grad():
            q_data = self.q(self.critic, s, a)[:, 0]                        # Q_1(s, a): [S, B]
        good = (q_data > v).float()[..., None]
        recon_loss = seed_mean(cfg.vae_weight * good * (recon - a).pow(2))
        kl = -0.5 * seed_mean(1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2))
        vae_loss = recon_loss + 0.5 * kl
        params = list(self.vae.parameters())
        apply_gradients(params, torch.autograd.grad(vae_loss.sum(), params), self.vae_opt)
        metrics = {"critic_loss": critic_loss.detach(), "value_loss": value_loss.detach(),
                   "vae_loss": vae_loss.detach(), "good_fraction": seed_mean(good)}
        # 4. actor
        self.delayed_actor_step(metrics, s, a, v, q_data)
        return metrics

    def bc_target(self, a, a_gen, v, q_data, q_gen) -> tuple[torch.Tensor, torch.Tensor]:
        """(a*, M): the advantage-guided action and the mask, as in the authors' code."""
        take_gen = (q_gen - v >= q_data - v)[..., None]
        target = a_gen * take_gen + a * ~take_gen
        mask = self.cfg.mask * ((q_gen >= v) | (q_data > v)).float()[..., None]
        return target, mask

    def update_actor(self, s, a, v, q_data) -> dict[str, torch.Tensor]:
        pi = self.actor(s)
        q_pi = self.q(self.critic, s, pi)[:, 0]
        lam = self.cfg.alpha / q_pi.abs().mean(1).detach()
        a_gen, _, _ = self.vae(s, pi)
        with torch.no_grad():
            q_gen = self.q(self.critic, s, a_gen)[:, 0]
        target, mask = self.bc_target(a, a_gen, v, q_data, q_gen)
        bc_loss = seed_mean(mask * (pi - target).pow(2))
        loss = -lam * seed_mean(q_pi) + bc_loss
        params = list(self.actor.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.actor_opt)
        return {"actor_loss": loss.detach(), "bc_loss": bc_loss.detach(), "lambda": lam}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(obs)

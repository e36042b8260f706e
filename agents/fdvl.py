"""f-DVL: dual value learning for offline RL (Sikchi, Zheng, Zhang, Niekum, ICLR 2024, "Dual RL:
Unification and New Methods for Reinforcement and Imitation Learning"), as the authors' code
(hari-sikchi/DVL, offline/) computes it.

Value (eq. 14 in the code's form), with x = min_k Qbar_k(s, a) - V(s) and alpha = `temp`:
    min_V (1 - alpha) E[V(s)] + alpha E[f*_p(x)]   over (s, a) ~ 1/2 (d^O + Unif) when
    `random_actions` = k > 0: the batch's actions plus k uniform actions per state.
  chi_square:      alpha max(x + x^2/4, 0) - (1 - alpha) x
  total_variation: alpha max(x, 0) - (1 - alpha) x       (optimum: P(Q > V) = (1 - alpha) / alpha)
  reverse_kl (XQL's Gumbel loss): z = min(x / alpha, max_clip), m = sg(max(max_batch z, -1)),
                   e^(z - m) - z e^(-m) - e^(-m)         (no (1 - alpha) term)
  The -(1 - alpha) x term, with Q detached, has the gradient of (1 - alpha) V (issue DVL#2).
Policy (AWR, target critic and the *new* V):  L_pi = -E[min(exp(beta (min Qbar - V)), 100) log pi(a|s)]
Critic:  y = r + gamma (1 - d) V_new(s'),  L_Q = sum_k E Huber_20(Q_k(s, a) - y)
then Polyak averaging of the target critic (tau 0.005).

Networks as the authors' (IQL's code, which DVL builds on: agents/iql.py): twin Q 256x256
without LayerNorm and V 256x256 with LayerNorm; a Gaussian actor with a tanh mean and a
state-independent log-std (min -5), its learning rate cosine-decayed over the run; every layer,
the actor's hidden and mean layers included, orthogonal(sqrt 2) with zero bias (jaxrl's
common.py and policy.py); Adam 3e-4; batch 1024.
Departure: reverse_kl's batch max m is taken per seed (each seed its own batch).
Defaults are the authors' locomotion command (chi_square, temp 1). With it V only rises (the loss
is flat for -4 < x < 0) and floats above the data's Q; at 10k updates on the generated datasets
`f=total_variation temp=0.8` scored higher on all nine (docs/agents.md).
"""
from __future__ import annotations

import torch
from tensordict import TensorDict

from rlcore.agent import Agent, Spec, apply_gradients, seed_mean
from rlcore.agents.iql import awr_policy_step, build_iql_networks
from rlcore.errors import ConfigError
from rlcore.agent.nets import polyak_update
from rlcore.registry import register_agent
from rlcore.schema import choice, count, positive

DIVERGENCES = ("chi_square", "total_variation", "reverse_kl")


def dual_value_loss(x: torch.Tensor, f: str, alpha: float, max_clip: float = 7.0) -> torch.Tensor:
    """Elementwise f-DVL value loss of x = Q - V ([S, ...]; reverse_kl's max is per seed)."""
    if f == "chi_square":
        return alpha * torch.clamp_min(x + x.pow(2) / 4, 0.0) - (1 - alpha) * x
    if f == "total_variation":
        return alpha * torch.clamp_min(x, 0.0) - (1 - alpha) * x
    if f == "reverse_kl":
        z = torch.clamp_max(x / alpha, max_clip)
        m = z.detach().reshape(z.shape[0], -1).max(1).values.clamp_min(-1.0)
        m = m.reshape(-1, *([1] * (z.dim() - 1)))
        return torch.exp(z - m) - z * torch.exp(-m) - torch.exp(-m)
    raise ConfigError(f"agent.f={f!r}; valid: {', '.join(DIVERGENCES)}")


@register_agent("fdvl")
class FDVL(Agent):
    config_schema = {"f": choice(*DIVERGENCES), "temp": positive(), "random_actions": count(0),
                     "huber_delta": positive()}

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        build_iql_networks(self, spec, cfg, value_layer_norm=cfg.value_layer_norm)

    def q(self, critic, s, a):
        return critic(torch.cat([s, a], dim=-1))                           # [S, 2, *B]

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        value_metrics, q_data = self.update_value(batch)
        policy_metrics = self.update_policy(batch, q_data)
        critic_metrics = self.update_critic(batch)
        polyak_update(self.target_critic, self.critic, self.cfg.tau)
        return {**value_metrics, **policy_metrics, **critic_metrics}

    def value_batch(self, batch: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
        """States and actions for the value loss: the data's, plus k uniform actions per state."""
        s, a, k = batch["observations"], batch["actions"], self.cfg.random_actions
        if k == 0:
            return s, a
        uniform = torch.rand(a.shape[0], k * a.shape[1], *a.shape[2:], device=a.device) * 2 - 1
        return s.repeat(1, k + 1, 1), torch.cat([a, uniform], dim=1)

    def update_value(self, batch: TensorDict) -> tuple[dict, torch.Tensor]:
        """The value step; also returns min_k Qbar_k(s, a) on the data's own rows (they come
        first in the value batch), which the actor reuses."""
        cfg = self.cfg
        s, a = self.value_batch(batch)
        with torch.no_grad():
            q = self.q(self.target_critic, s, a).min(1).values              # [S, (k+1) B]
        x = q - self.value(s)
        loss = seed_mean(dual_value_loss(x, cfg.f, cfg.temp, cfg.max_clip))
        params = list(self.value.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.value_opt)
        q_data = q[:, :batch["actions"].shape[1]]
        return {"value_loss": loss.detach(), "q_minus_v": seed_mean(x.detach())}, q_data

    def update_policy(self, batch: TensorDict, q_data: torch.Tensor) -> dict:
        """AWR with the target critic's min_k Qbar_k(s, a) and the just-updated V."""
        s = batch["observations"]
        with torch.no_grad():
            advantage = q_data - self.value(s)
        return awr_policy_step(self, s, batch["actions"], advantage, self.cfg.beta,
                               self.cfg.weight_clip)

    def update_critic(self, batch: TensorDict) -> dict:
        cfg = self.cfg
        with torch.no_grad():
            v_next = self.value(batch["next_observations"])
            y = batch["rewards"] + cfg.discount * (1 - batch["terminals"]) * v_next
        q = self.q(self.critic, batch["observations"], batch["actions"])
        huber = torch.nn.functional.huber_loss(q, y[:, None].expand_as(q), reduction="none",
                                               delta=cfg.huber_delta)
        loss = 2 * seed_mean(huber)                                         # sum over the twins
        params = list(self.critic.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.critic_opt)
        return {"critic_loss": loss.detach()}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy.act(obs, deterministic)

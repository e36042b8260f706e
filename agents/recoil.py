"""ReCOIL: offline imitation from a few expert trajectories and suboptimal data, no rewards
(Sikchi, Zheng, Zhang, Niekum, ICLR 2024, "Dual RL", Section 6), as the authors' imitation
critic (update_v_recoil / update_q_imitate, IQL-based JAX code) computes it.

Every batch is [mixture half ; expert half]: B transitions of the offline mixture (suboptimal
data plus the expert episodes) and B expert transitions.
  Q (LS-IQ-style bounded targets, per twin, summed over the twins):
      L_Q = mean[ 1/2 (Q(s_E, a_E) - 200)^2 ] + mean[ 1/2 (Q(s, a) - y)^2 ]   (mixture half)
      y = -2 + gamma (1 - d) V(s') + gamma d (-200)
  V (the implicit maximiser, XQL's Gumbel loss as in f-DVL's reverse_kl), on the mixture half:
      z = min((min_k Qbar_k(s, a) - V(s)) / temp, max_clip),  m = sg(max(max_batch z, -1)),
      L_V = mean[e^(z - m) - z e^(-m) - e^(-m)],  the max over the whole (both-halves) batch.
  pi: AWR on the mixture half with the *updated* V, min(exp(beta (min_k Qbar_k - V_new)), 100)
      * -log pi(a|s), as the IQL-based learners the code builds on pass `new_value` to the actor.
Order and networks as IQL's learner (agents/iql.py, jaxrl init on every layer): V, the actor,
then Q against the new V, then Polyak averaging of the target critic. LayerNorm off, raw
observations (no normalisation), as the DVL and SMORe code.

Temperature. Every target is bounded: Q on the expert half is pulled to 200, and on the mixture
y = -2 + gamma V(s') <= 196 while V <= 200, so a mixture Q above the expert's is divergence.
It comes from the Gumbel loss's soft maximum, V = temp log E[exp(Q / temp)], which sits above
the noisy Q it regresses on (by Var(Q) / (2 temp) for Gaussian noise): once that exceeds the
step cost of 2, each backup adds to the next. The authors' README: start at 2.5 and raise
`temp` (5, 10, 20) until Q stops diverging. The default is their start, 2.5, which keeps Q
bounded here: on one hopper-expert episode plus hopper-random, 3 seeds, the mixture's mean Q
peaked near 160 at 7k updates and was back at 141-143 by 10k, the expert's at 200
(docs/agents.md). The earlier code (normalised inputs) had diverged there (469 at 10k, one seed).
"""
from __future__ import annotations

import torch
from tensordict import TensorDict

from rlcore.agent import Agent, Spec, apply_gradients, seed_mean
from rlcore.agents.fdvl import dual_value_loss
from rlcore.agents.iql import awr_policy_step, build_iql_networks
from rlcore.training.buffer import Buffer
from rlcore.errors import ConfigError
from rlcore.agent.nets import polyak_update
from rlcore.registry import register_agent
from rlcore.schema import number, positive


@register_agent("recoil")
class ReCOIL(Agent):
    config_schema = {"temp": positive(), "constant_reward": number(), "expert_value": number(),
                     "absorbing_value": number()}

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        build_iql_networks(self, spec, cfg, value_layer_norm=cfg.value_layer_norm)

    def check_data(self, buffer: Buffer) -> None:
        if "expert" not in buffer.subsets:
            raise ConfigError("recoil learns from expert episodes plus suboptimal data: give "
                              "env.expert_episodes=k (and env.suboptimal=<dataset>), e.g. "
                              "env.dataset=hopper-expert env.expert_episodes=1 env.suboptimal=hopper-random")

    def sample(self, buffer: Buffer, batch_size: int) -> TensorDict:
        """[S, 2B]: B mixture transitions, then B expert transitions, per seed."""
        S = self.spec.seeds
        mixture = buffer.sample(S * batch_size).reshape(S, batch_size)
        expert = buffer.sample(S * batch_size, subset="expert").reshape(S, batch_size)
        return torch.cat([mixture, expert], dim=1)

    def q(self, critic, s, a):
        return critic(torch.cat([s, a], dim=-1))                           # [S, 2, 2B]

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg, half = self.cfg, batch.shape[1] // 2
        s, a = batch["observations"], batch["actions"]
        with torch.no_grad():
            q_target = self.q(self.target_critic, s, a).min(1).values       # [S, 2B]
        v = self.value(s)
        value_loss = seed_mean(dual_value_loss(q_target - v, "reverse_kl", cfg.temp, cfg.max_clip)[:, :half])
        params = list(self.value.parameters())
        apply_gradients(params, torch.autograd.grad(value_loss.sum(), params), self.value_opt)

        with torch.no_grad():
            advantage = (q_target - self.value(s))[:, :half]                # the updated V
            done = batch["terminals"][:, :half]
            v_next = self.value(batch["next_observations"][:, :half])
            y = cfg.constant_reward + cfg.discount * (1 - done) * v_next + cfg.discount * done * cfg.absorbing_value
        metrics = awr_policy_step(self, s[:, :half], a[:, :half], advantage, cfg.beta, cfg.weight_clip)
        q = self.q(self.critic, s, a)                                         # [S, 2, 2B]
        critic_loss = 2 * (seed_mean(0.5 * (q[..., half:] - cfg.expert_value).pow(2))
                           + seed_mean(0.5 * (q[..., :half] - y[:, None]).pow(2)))
        params = list(self.critic.parameters())
        apply_gradients(params, torch.autograd.grad(critic_loss.sum(), params), self.critic_opt)
        polyak_update(self.target_critic, self.critic, cfg.tau)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(), **metrics,
                "q_expert": seed_mean(q.detach()[..., half:]), "q_mixture": seed_mean(q.detach()[..., :half])}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy.act(obs, deterministic)

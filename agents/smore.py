"""SMORe: score models for offline goal-conditioned RL (Sikchi, Chitnis, Touati, Geramifard,
Zhang, Niekum, ICLR 2024), as the authors' code computes it (hari-sikchi/SMORe: learner.py,
critic_gcrl.py, actor.py, dataset_utils.py, configs/gcrl_config.py).

SMORe is reward-free. It learns unnormalised scores S(s, a, g) (the twin "Q" below) by a dual
occupancy-matching objective: the policy's goal-conditioned visitation is pushed toward the
*goal-transition distribution* (transitions that enter g), mixed with the offline data so that
the data need not cover it. Each update draws two batches of equal size:
  - B_mix, the offline data with hindsight goals: a future state of the same trajectory with
    probability 0.8, else (the dataset's commanded goal there; a random state here, the goal
    distribution of data whose goals are its states);
  - B_gt, goal transitions (s_{k-1}, a_{k-1}, s_k) with g = s_k (rlcore.data.goals).
In the code's order, with gamma 0.99 and r~ = -2:
    V:   L_V = E_mix[ |tau - 1(u < 0)| u^2 ],  u = min_k Sbar_k(s, a, g) - V(s, g)   (tau = beta 0.8)
    pi:  L_pi = -E_mix[ min(exp(3 (min_k Sbar_k - V_new)), 100) log pi(a | s, g) ]  (AWR)
    S (smore_stable, the default):
         L_S = sum_k E_gt[(S_k - (-r~)/(1 - gamma))^2] + (1 - gamma) 1e-4 E_mix[S_k^2]
               + 1/2 E_mix[(S_k - (r~ + gamma V_new(s', g)))^2]
    S (smore, the original):
         L_S = sum_k -E_gt[S_k] + 1e-4 E_mix[S_k] + 1/2 E_mix[(S_k - gamma V_new(s', g))^2]
then Polyak averaging of the target scores (tau 0.005). V_new is the V just updated; no
terminal mask (the code has none). Networks as the IQL code they build on: 256x256x256 ReLU,
orthogonal init, layer norm in V, a tanh-mean Gaussian actor with a state-independent log-std
whose learning rate decays by a cosine over the run; Adam 3e-4; batch 256 per half.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict

from rlcore.agent import Spec, apply_gradients, seed_mean
from rlcore.agent.goal import GoalAgent, goal_input
from rlcore.agent.nets import polyak_update
from rlcore.agent.objectives import expectile_loss
from rlcore.registry import register_agent
from rlcore.schema import choice

from rlcore.agents.iql import awr_policy_step, build_iql_networks

NEG_REWARD = -2.0      # critic_gcrl.py: neg_r


def smore_score_loss(s_mix: torch.Tensor, s_gt: torch.Tensor, td_target: torch.Tensor,
                     discount: float, loss: str) -> torch.Tensor:
    """L_S per seed, summed over the twin heads: s_mix, s_gt are [S, 2, B] scores on the two
    halves, td_target [S, B] = r~ + gamma V(s', g) (stable) or gamma V(s', g) (original)."""
    td = 0.5 * (s_mix - td_target[:, None]).pow(2).mean(-1)                       # [S, 2]
    if loss == "smore_stable":
        fit = (s_gt + NEG_REWARD / (1 - discount)).pow(2).mean(-1)                  # (S - 200)^2
        reg = (1 - discount) * 1e-4 * s_mix.pow(2).mean(-1)
    else:
        fit = -s_gt.mean(-1)
        reg = 1e-4 * s_mix.mean(-1)
    return (fit + reg + td).sum(1)


@register_agent("smore")
class SMORe(GoalAgent):
    config_schema = {**GoalAgent.config_schema, "loss": choice("smore_stable", "smore")}

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        self.mix_goals = self.actor_goals          # the mixture's goals (the actor trains on it)
        inputs = Spec(spec.obs_dim + spec.goal_dim, spec.action_dim, seeds=spec.seeds)
        build_iql_networks(self, inputs, cfg, value_layer_norm=cfg.layer_norm)

    def sample(self, buffer, batch_size: int) -> TensorDict:
        """[B_mix ; B_gt] along each seed's batch: [S, 2B], the first half the mixture (goals
        from `mix_goals`), the second goal transitions."""
        sampler, S = self.goal_sampler(buffer), self.spec.seeds
        mix = sampler.sample(S * batch_size, self.mix_goals, None)
        gt = sampler.sample_goal_transitions(S * batch_size)
        keys = ("observations", "actions", "next_observations", "value_goals")
        return torch.cat([mix.select(*keys).reshape(S, batch_size),
                          gt.select(*keys).reshape(S, batch_size)], dim=1)

    def q(self, critic, x, a):
        return critic(torch.cat([x, a], dim=-1))                                 # [S, 2, 2B]

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        half = batch.shape[1] // 2
        x = goal_input(batch["observations"], batch["value_goals"])
        x_next = goal_input(batch["next_observations"], batch["value_goals"])
        a = batch["actions"]
        x_mix, a_mix = x[:, :half], a[:, :half]

        with torch.no_grad():
            q_target = self.q(self.target_critic, x_mix, a_mix).min(1).values       # [S, B]
        value_loss = seed_mean(expectile_loss(q_target - self.value(x_mix), cfg.expectile))
        params = list(self.value.parameters())
        apply_gradients(params, torch.autograd.grad(value_loss.sum(), params), self.value_opt)

        with torch.no_grad():
            advantage = q_target - self.value(x_mix)                                # V_new
            v_next = self.value(x_next[:, :half])
        metrics = awr_policy_step(self, x_mix, a_mix, advantage, cfg.temperature, cfg.weight_clip)

        td_target = cfg.discount * v_next + (NEG_REWARD if cfg.loss == "smore_stable" else 0.0)
        scores = self.q(self.critic, x, a)
        critic_loss = smore_score_loss(scores[..., :half], scores[..., half:], td_target,
                                       cfg.discount, cfg.loss)
        params = list(self.critic.parameters())
        apply_gradients(params, torch.autograd.grad(critic_loss.sum(), params), self.critic_opt)
        polyak_update(self.target_critic, self.critic, cfg.tau)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "score_mix": seed_mean(scores[..., :half].detach()),
                "score_goal_transitions": seed_mean(scores[..., half:].detach()), **metrics}

    def policy_action(self, obs, goals, deterministic: bool) -> torch.Tensor:
        return self.policy.act(goal_input(obs, goals), deterministic)

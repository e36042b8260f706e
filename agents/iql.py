"""IQL: Implicit Q-Learning (Kostrikov, Nair, Levine, ICLR 2022), as the authors' code
(ikostrikov/implicit_q_learning: learner.py, critic.py, actor.py, policy.py, configs/)
computes it. That code is the reference here, per-dataset values included.

Per update, in learner.py's order:
    V:  L_V = E_D[ L_2^tau(min_k Qbar_k(s, a) - V(s)) ],  L_2^tau(u) = |tau - 1(u < 0)| u^2   (eq. 5)
    pi: L_pi = -E_D[ min(exp(beta (min_k Qbar_k(s, a) - V_new(s))), 100) log pi(a|s) ]     (eq. 7)
    Q:  L_Q = sum_k E_D[ (r + gamma (1 - d) V_new(s') - Q_k(s, a))^2 ]                     (eq. 6)
then Polyak averaging of the target critic (tau 0.005). The actor and the critic's target read
the *updated* V (the code passes `new_value` to both).

Networks (jaxrl): twin Q and V, 256x256 ReLU, every layer orthogonal(sqrt 2) with zero bias; a
Gaussian actor whose mean is tanh'd and whose log-std is a state-independent parameter (zeros,
clipped to [-5, 2]); Adam 3e-4, the actor's learning rate cosine-decayed to 0 over the run.
Rewards r * 1000 / (max - min episode return) on hopper, walker2d and halfcheetah, r - 1 on
AntMaze; actions clipped to +-(1 - 1e-5) as D4RLDataset does. Expectile 0.7 and beta 3.0
(mujoco_config.py); 0.9 and 10.0 on AntMaze (antmaze_config.py).
Departures: the kitchen/adroit config's actor dropout (0.1) is not implemented; the cosine
decays over `trainer.steps` (the code's 1M, the protocol's run length).
Raw observations, as the authors' code, learn slowly in short runs on walker2d and halfcheetah:
at 5k updates (3 seeds) walker2d-medium scored 3.8 raw against 28.1 with
`agent.normalize_obs=true` (CORL's choice), halfcheetah-medium 22.3 against 35.7 (docs/agents.md).
"""
from __future__ import annotations

import copy

import torch
from tensordict import TensorDict

from rlcore.agent import Agent, Spec, apply_gradients, seed_mean
from rlcore.agent.nets import MLP, GaussianPolicy, polyak_update
from rlcore.agent.objectives import awr_weight, cosine_scale, effective_batch_share, expectile_loss
from rlcore.registry import register_agent

JAXRL_GAIN = 2 ** 0.5          # jaxrl's default_init: orthogonal(sqrt 2), zero bias
ACTION_CLIP = 1 - 1e-5          # D4RLDataset(clip_to_eps=True)


def build_iql_networks(agent: Agent, spec: Spec, cfg, value_layer_norm: bool = False) -> None:
    """The IQL code's networks, which the Dual-RL code (f-DVL, ReCOIL) builds on: twin Q and V
    with jaxrl's init, a tanh-mean Gaussian actor, Adam for each, and the actor's step counter."""
    agent.critic = MLP(spec.obs_dim + spec.action_dim, cfg.hidden, 1, seeds=spec.seeds, heads=2,
                       squeeze=True, orthogonal_init=JAXRL_GAIN)
    agent.target_critic = copy.deepcopy(agent.critic).requires_grad_(False)
    agent.value = MLP(spec.obs_dim, cfg.hidden, 1, layer_norm=value_layer_norm, seeds=spec.seeds,
                      squeeze=True, orthogonal_init=JAXRL_GAIN)
    agent.policy = GaussianPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, tanh_mean=True,
                                  log_std_min=-5.0, seeds=spec.seeds, orthogonal_init=JAXRL_GAIN)
    agent.critic_opt = torch.optim.Adam(agent.critic.parameters(), lr=cfg.critic_lr)
    agent.value_opt = torch.optim.Adam(agent.value.parameters(), lr=cfg.value_lr)
    agent.policy_opt = torch.optim.Adam(agent.policy.parameters(), lr=cfg.actor_lr)
    agent.register_buffer("step", torch.zeros(()))


def awr_loss(policy, s, a, advantage, beta: float, weight_clip: float):
    """-E[min(exp(beta A), clip) log pi(a|s)] per seed (actor.py), the data's actions clipped to
    +-(1 - 1e-5); also the weights."""
    weight = awr_weight(advantage, beta, weight_clip)
    return seed_mean(weight * -policy.log_prob(s, a.clamp(-ACTION_CLIP, ACTION_CLIP))), weight


def awr_policy_step(agent: Agent, s, a, advantage, beta: float, weight_clip: float) -> dict:
    """One AWR actor step with the cosine-decayed learning rate."""
    loss, weight = awr_loss(agent.policy, s, a, advantage, beta, weight_clip)
    params = list(agent.policy.parameters())
    agent.step += 1
    decay = agent.cfg.lr_decay_steps
    apply_gradients(params, torch.autograd.grad(loss.sum(), params), agent.policy_opt,
                    cosine_scale(agent.step - 1, decay) if decay else None)
    return {"policy_loss": loss.detach(), "weight_ess": effective_batch_share(weight)}


@register_agent("iql")
class IQL(Agent):
    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        build_iql_networks(self, spec, cfg)

    def q(self, critic, s, a):
        return critic(torch.cat([s, a], dim=-1))                           # [S, 2, B]

    def value_loss(self, s, a) -> tuple[torch.Tensor, torch.Tensor]:
        """Expectile regression of V on the target critic's min (eq. 5); also that min."""
        with torch.no_grad():
            q_target = self.q(self.target_critic, s, a).min(1).values      # [S, B]
        return seed_mean(expectile_loss(q_target - self.value(s), self.cfg.expectile)), q_target

    def critic_loss(self, batch: TensorDict, v_next: torch.Tensor) -> torch.Tensor:
        """sum_k E (r + gamma (1 - d) V(s') - Q_k(s, a))^2 (eq. 6)."""
        y = batch["rewards"] + self.cfg.discount * (1 - batch["terminals"]) * v_next
        q = self.q(self.critic, batch["observations"], batch["actions"])
        return 2 * seed_mean((q - y[:, None]).pow(2))

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        s, a = batch["observations"], batch["actions"]
        value_loss, q_target = self.value_loss(s, a)
        params = list(self.value.parameters())
        apply_gradients(params, torch.autograd.grad(value_loss.sum(), params), self.value_opt)
        with torch.no_grad():                                             # the updated V
            advantage = q_target - self.value(s)
            v_next = self.value(batch["next_observations"])
        metrics = awr_policy_step(self, s, a, advantage, cfg.beta, cfg.weight_clip)
        critic_loss = self.critic_loss(batch, v_next)
        params = list(self.critic.parameters())
        apply_gradients(params, torch.autograd.grad(critic_loss.sum(), params), self.critic_opt)
        polyak_update(self.target_critic, self.critic, cfg.tau)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "advantage_mean": seed_mean(advantage), **metrics}

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy.act(obs, deterministic)

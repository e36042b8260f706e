"""Goal-conditioned behaviour cloning, two ways the field runs it.

`gcbc` is OGBench's GCBC (impls/agents/gcbc.py): maximise log pi(a | s, g) for goals g drawn
uniformly from the same trajectory's future (actor goals current/trajectory/random 0/1/0),
pi = N(mu(s, g), I) from a 512x512x512 GELU MLP, Adam 3e-4, batch 1024.

`rvs` is RvS / "Decision-MLP" as the stitching paper trains it (Ghugare et al. 2024,
train_dmlp.py, model.py): a deterministic tanh MLP [s || g] -> 1024 -> 1024 -> a (ReLU), mean
squared error to the data's action, Adam 1e-3, batch 256, gradient norm clipped at 0.25, goals
uniform in the trajectory's future. `data.augment=temporal` turns on the paper's augmentation
for either (rlcore.data.goals): with probability 0.5 the goal is taken from another trajectory that
passes through the waypoint's K-means cluster.
"""
from __future__ import annotations

import torch
from tensordict import TensorDict

from rlcore.agent import apply_gradients, clip_grad_norm_per_seed, seed_mean
from rlcore.agent.goal import GoalActor, GoalAgent, goal_input
from rlcore.agent.nets import DeterministicPolicy
from rlcore.registry import register_agent
from rlcore.schema import flag, positive


@register_agent("gcbc")
class GCBC(GoalAgent):
    config_schema = {**GoalAgent.config_schema, "const_std": flag()}

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.actor = GoalActor(spec.obs_dim + spec.goal_dim, spec.action_dim, cfg.actor_hidden,
                               spec.seeds, cfg.const_std)
        self.opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        """L = -E log pi(a | s, g_actor)."""
        x = goal_input(batch["observations"], batch["actor_goals"])
        loss = -seed_mean(self.actor.log_prob(x, batch["actions"]))
        params = list(self.actor.parameters())
        apply_gradients(params, torch.autograd.grad(loss.sum(), params), self.opt)
        return {"actor_loss": loss.detach()}

    def policy_action(self, obs, goals, deterministic: bool) -> torch.Tensor:
        return self.actor(goal_input(obs, goals)).clamp(-1.0, 1.0)


@register_agent("rvs")
class RvS(GoalAgent):
    config_schema = {**GoalAgent.config_schema, "grad_clip": positive()}

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.policy = DeterministicPolicy(spec.obs_dim + spec.goal_dim, spec.action_dim,
                                          cfg.hidden, seeds=spec.seeds)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)

    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        """L = mean (pi(s, g) - a)^2 (F.mse_loss), the gradient's norm (per seed) clipped at
        grad_clip as clip_grad_norm_ does."""
        x = goal_input(batch["observations"], batch["actor_goals"])
        loss = seed_mean((self.policy(x) - batch["actions"]).pow(2))
        params = list(self.policy.parameters())
        grads, norm = clip_grad_norm_per_seed(torch.autograd.grad(loss.sum(), params),
                                              self.cfg.grad_clip, self.spec.seeds)
        apply_gradients(params, grads, self.opt)
        return {"bc_loss": loss.detach(), "grad_norm": norm.detach()}

    def policy_action(self, obs, goals, deterministic: bool) -> torch.Tensor:
        return self.policy(goal_input(obs, goals))

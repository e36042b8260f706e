"""The agent contract every registered agent follows.

- Built from the dataset's `Spec` and the agent's config (configs/agent/<name>.yaml).
- `update(batch) -> dict[str, Tensor]`: one iteration's losses and optimizer steps, tensor ops
  only (no `.item()`, no host sync, no Python branch on a tensor value), with Python-side
  state that repeats every `update_cycle` updates (tests/test_capture_contract.py checks both
  for every registered agent).
- `act(obs, deterministic)` on a batch of raw observations (normalised inside).
- `state_dict()` covers networks, target networks, the observation normaliser and optimizers.
- `sample(buffer, batch_size)` picks the buffer's sampler the method needs (transitions here).

Many seeds in one process (`seeds=K`). An agent with `multi_seed = True` (the default) holds
`spec.seeds` independent copies of itself in member-batched networks (`MLP(seeds=S)`, see
rlcore.agent.nets): every batch tensor is [S, B, ...], every loss is a per-seed vector [S] (mean over
that seed's batch, `seed_mean`), and gradients come from `loss.sum()`: seed s's loss depends
only on seed s's parameters, so its gradient is exactly the one-seed gradient, and Adam is
elementwise. Anything reduced over parameters (a dot product, a norm) is reduced per seed
(`grad_dot`). Metrics are [S] vectors. With S = 1 this is the ordinary one-seed agent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from omegaconf import DictConfig
from tensordict import TensorDict
from torch import nn

from rlcore.training.buffer import Buffer
from rlcore.agent.nets import polyak_update
from rlcore.data.preprocess import ObsNormalizer
from rlcore.schema import check_rules


@dataclass(frozen=True)
class Spec:
    obs_dim: int
    action_dim: int
    goal_dim: int = 0
    seeds: int = 1          # independent copies trained at once (multi-seed agents)
    discrete: bool = False  # action_dim discrete actions (an index per step), not a vector
    problem: dict | None = None  # a simulator's problem (rlcore.envs.inventory), plain values


class Agent(nn.Module):
    multi_seed = True       # False: one seed per process, no seed dimension (online SAC)
    on_policy = False       # True: learns in iterate(sample) from its own episodes, no buffer
    simulates = False       # True: learns from a simulator's scenarios, update(scenarios), no buffer
    config_schema: dict = {}  # rules for this agent's own config keys (rlcore.schema)
    update_cycle = 1        # updates after which Python-side state repeats (CUDA-graph capture)

    def __init__(self, spec: Spec, cfg: DictConfig):
        super().__init__()
        check_rules(cfg, self.config_schema)       # load_config checked it; direct use too
        self.spec, self.cfg = spec, cfg
        self.obs_normalizer = ObsNormalizer(spec.obs_dim)

    # -- to implement ------------------------------------------------------------------
    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Action for already-normalised observations."""
        raise NotImplementedError

    # -- staged methods (CPL's BC pretraining, P-IQL's reward learning) ----------------------
    phase = 0               # the stage the next update belongs to

    def phase_starts(self) -> list[int]:
        """Update counts at which a new stage begins. The trainer calls `begin_phase(step)` there
        (and once at the start, or at a resume, before any state is loaded) and rebuilds its
        compiled update: a stage is Python-side state that changes once, not every update."""
        return []

    def begin_phase(self, step: int) -> None:
        """Enter the stage of the update after `step` updates; an agent whose new stage starts
        something fresh (CPL's optimizer) resets it here."""
        self.phase = sum(step >= s for s in self.phase_starts())

    # -- provided -----------------------------------------------------------------------
    def check_data(self, buffer: Buffer) -> None:
        """Raise a clear error when the buffer lacks what the method needs (e.g. expert data)."""

    def sample(self, buffer: Buffer, batch_size: int) -> TensorDict:
        """Uniform transitions, [S, B] for multi-seed agents: each seed its own draws."""
        if not self.multi_seed:
            return buffer.sample(batch_size)
        return buffer.sample(self.spec.seeds * batch_size).reshape(self.spec.seeds, batch_size)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions for raw observations ([S, n, obs] for multi-seed agents), in eval mode
        (dropout off), as the authors' code evaluates."""
        training = self.training
        self.train(False)
        try:
            return self.policy_action(self.obs_normalizer(obs), deterministic)
        finally:
            self.train(training)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)}

    def state_dict(self, *args, **kwargs):  # noqa: D102 - networks + optimizers
        return {"modules": super().state_dict(*args, **kwargs),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()}}

    def load_state_dict(self, state, strict: bool = True):  # noqa: D102
        result = super().load_state_dict(state["modules"], strict=strict)
        for key, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][key])
        return result


class DelayedActorUpdates:
    """TD3's delayed policy updates: every `cfg.policy_freq` critic updates, `update_actor`
    and then Polyak averaging of both targets (`delayed_actor_step`). The phase is a Python int
    that cycles through policy_freq values and travels with checkpoints: under torch.compile
    that is policy_freq cached graphs, where a growing counter would recompile at every step.
    `delayed_actor_step` calls `update_actor` on a line of its own: Dynamo splits the update at
    each optimizer step, and a bound method of a per-call object left on the stack there (as in
    `metrics.update(self.update_actor(...))`) is guarded by identity, so the rest of the update
    would recompile at every call until Dynamo gives up."""

    phase = 0

    @property
    def update_cycle(self) -> int:
        return int(self.cfg.policy_freq)

    def actor_turn(self) -> bool:
        self.phase = (self.phase + 1) % self.cfg.policy_freq
        return self.phase == 0

    def delayed_actor_step(self, metrics: dict, *actor_inputs) -> None:
        """On the actor's turn: `update_actor(*actor_inputs)` (its metrics into `metrics`), then
        target critic and target actor move toward theirs by `cfg.tau`."""
        if not self.actor_turn():
            return
        actor_metrics = self.update_actor(*actor_inputs)
        metrics.update(actor_metrics)
        polyak_update(self.target_critic, self.critic, self.cfg.tau)
        polyak_update(self.target_actor, self.actor, self.cfg.tau)

    def get_extra_state(self):
        return {"phase": self.phase}

    def set_extra_state(self, state) -> None:
        self.phase = int(state["phase"])


def apply_gradients(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                    optimizer: torch.optim.Optimizer, lr_scale: torch.Tensor | None = None) -> None:
    """Install gradients (from torch.autograd.grad) and take one optimizer step.

    Agents take every step this way rather than with loss.backward(): under torch.compile a
    traced backward() leaves no .grad behind, and the optimizer would silently skip the step.
    `lr_scale` (a device scalar, e.g. a cosine schedule) scales the step: Adam's step is linear
    in lr and its moments do not depend on it, so p + s (p' - p) is exactly the step taken at
    lr s * lr, without touching the optimizer's lr (a float there would recompile per value).
    The rescale is three multi-tensor ops with s as a tensor operand: `_foreach_lerp_` has no
    tensor-weight overload and would read s on the host (a sync per step, and no CUDA graph).
    """
    before = [p.detach().clone() for p in params] if lr_scale is not None else None
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()
    if before is not None:
        with torch.no_grad():
            stepped = [p.detach() for p in params]
            torch._foreach_sub_(stepped, before)        # p' - p
            torch._foreach_mul_(stepped, lr_scale)      # s (p' - p)
            torch._foreach_add_(stepped, before)        # p + s (p' - p)


def grads_by_group(groups: Sequence[tuple[torch.Tensor, Sequence[torch.Tensor]]]):
    """(params, grads) for one optimizer step on several losses, each loss differentiated only
    with respect to its own parameters (an actor's loss that reads the critic leaves the critic
    untouched, as a stop-gradient would). The graph is kept until the last loss: under
    torch.compile the losses come from one traced graph whose saved tensors they share."""
    params, grads = [], []
    for i, (loss, group) in enumerate(groups):
        group = list(group)
        params += group
        grads += torch.autograd.grad(loss.sum(), group, retain_graph=i < len(groups) - 1)
    return params, grads


def clip_grad_norm_per_seed(grads: Sequence[torch.Tensor], max_norm: float,
                            seeds: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """torch.nn.utils.clip_grad_norm_ for each seed's own parameters (seed-major tensors):
    g * min(1, max_norm / (||g|| + 1e-6)); also the norms [S]."""
    norm = torch.stack([g.reshape(seeds, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norm + 1e-6)).clamp_max(1.0)
    return [scale_per_seed(scale, g) for g in grads], norm


def seed_mean(x: torch.Tensor) -> torch.Tensor:
    """[S, ...] -> [S]: each seed's mean over everything else (its batch, its heads)."""
    return x.reshape(x.shape[0], -1).mean(1)


def grad_dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], seeds: int) -> torch.Tensor:
    """<a, b> over all of a seed's parameters, per seed: [S] (parameters are seed-major)."""
    return torch.stack([(x * y).reshape(seeds, -1).sum(1) for x, y in zip(a, b)]).sum(0)


def scale_per_seed(scale: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """scale[s] * g[seed s's slice], for a seed-major parameter-shaped g and scale [S]."""
    return (scale[:, None] * g.reshape(len(scale), -1)).reshape(g.shape)

"""The agent contract every registered agent follows.

- Built from the dataset's `Spec` and the agent's config (configs/agent/<name>.yaml).
- `update(batch) -> dict[str, Tensor]`: one iteration's losses and optimizer steps, tensor ops
  only (no `.item()`, no host sync, no Python branch on a tensor value).
- `act(obs, deterministic)` on a batch of raw observations (normalised inside).
- `state_dict()` covers networks, target networks, the observation normaliser and optimizers.
- `sample(buffer, batch_size)` picks the buffer's sampler the method needs (transitions here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from omegaconf import DictConfig
from tensordict import TensorDict
from torch import nn

from rlcore.buffer import Buffer
from rlcore.preprocess import ObsNormalizer


@dataclass(frozen=True)
class Spec:
    obs_dim: int
    action_dim: int
    goal_dim: int = 0


class Agent(nn.Module):
    def __init__(self, spec: Spec, cfg: DictConfig):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        self.obs_normalizer = ObsNormalizer(spec.obs_dim)

    # -- to implement ------------------------------------------------------------------
    def update(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Action for already-normalised observations."""
        raise NotImplementedError

    # -- provided -----------------------------------------------------------------------
    def sample(self, buffer: Buffer, batch_size: int) -> TensorDict:
        return buffer.sample(batch_size)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.policy_action(self.obs_normalizer(obs), deterministic)

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


def apply_gradients(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                    optimizer: torch.optim.Optimizer) -> None:
    """Install gradients (from torch.autograd.grad) and take one optimizer step.

    Agents take every step this way rather than with loss.backward(): under torch.compile a
    traced backward() leaves no .grad behind, and the optimizer would silently skip the step.
    """
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()


def grad_dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """<a, b> over all parameters, as one flat vector (a device scalar)."""
    return torch.stack([(x * y).sum() for x, y in zip(a, b)]).sum()

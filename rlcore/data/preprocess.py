"""Reward preprocessing and observation normalisation, as the authors applied them."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from rlcore.data import DatasetError, OfflineDataset


def return_range(ds: OfflineDataset, max_episode_steps: int = 1000) -> np.ndarray:
    """r * max_episode_steps / (max episode return - min episode return) (IQL, O-DICE, f-DVL)."""
    returns = ds.episode_returns()
    if len(returns) < 2 or returns.max() - returns.min() <= 0:
        raise DatasetError(f"dataset {ds.name!r}: reward scaling 'return_range' needs two or more "
                           f"complete episodes with different returns (found {len(returns)})")
    return ds.rewards * (max_episode_steps / (returns.max() - returns.min()))


REWARD_TRANSFORMS = {
    "none": lambda ds, steps: ds.rewards,
    "return_range": return_range,
    "antmaze_minus_one": lambda ds, steps: ds.rewards - 1.0,                     # IQL, f-DVL
    "odice_antmaze": lambda ds, steps: np.where(ds.rewards == 0, -3.0, 0.0),     # O-DICE
}


def transform_rewards(ds: OfflineDataset, name: str, max_episode_steps: int) -> OfflineDataset:
    if name not in REWARD_TRANSFORMS:
        raise ValueError(f"unknown reward transform {name!r}; valid: {', '.join(REWARD_TRANSFORMS)}")
    rewards = np.asarray(REWARD_TRANSFORMS[name](ds, max_episode_steps), dtype=np.float32)
    return replace(ds, rewards=rewards)


class ObsNormalizer(nn.Module):
    """(s - mean) / std with D4RL-style std + 1e-3; identity until `fit` is called."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def fit(self, observations: np.ndarray, eps: float = 1e-3) -> None:
        self.mean.copy_(torch.as_tensor(observations.mean(0)))
        self.std.copy_(torch.as_tensor(observations.std(0) + eps))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std

    def apply_numpy(self, ds: OfflineDataset) -> OfflineDataset:
        mean, std = self.mean.cpu().numpy(), self.std.cpu().numpy()
        return replace(ds, observations=(ds.observations - mean) / std,
                       next_observations=(ds.next_observations - mean) / std)

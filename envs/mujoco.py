"""Datasets made here for the Gymnasium MuJoCo v5 tasks, with no network.

- `<env>-random`: uniform random actions (D4RL's "random" quality, from an untrained policy).
- `hopper-pd-noisy`: a PD balance controller with per-episode Gaussian action noise,
  sigma ~ U[0, 0.6]. Noise-free it stands for the full 1000 steps (return about 1000, D4RL
  score about 31); with noise it falls early, so returns span about 10 to 1000. An offline
  agent that learns to balance beats the data's mean: a task with a known good answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from rlcore.collect import Behaviour, collect
from rlcore.data import OfflineDataset
from rlcore.registry import register_dataset


@dataclass(frozen=True)
class Recipe:
    name: str
    gym_id: str
    description: str
    behaviour: Callable[[int], Behaviour]  # action_dim -> behaviour
    action_dim: int
    gym_kwargs: dict = field(default_factory=dict)

    def make(self, transitions: int, seed: int, progress: bool = True) -> OfflineDataset:
        return collect(self.name, self.gym_id, self.behaviour(self.action_dim), transitions, seed,
                       progress=progress, gym_kwargs=self.gym_kwargs,
                       metadata={"recipe": self.description})


class UniformRandom:
    def __init__(self, action_dim: int):
        self.action_dim = action_dim

    def start_episodes(self, envs, rng) -> None:
        pass

    def __call__(self, obs, rng):
        return rng.uniform(-1.0, 1.0, size=(len(obs), self.action_dim))


class NoisyHopperBalance:
    """a = clip(-kp q - kd qdot (+ torso correction on the thigh) + sigma_ep N(0, I), -1, 1)."""

    kp, kd, torso_kp, torso_kd, max_sigma = 4.0, 0.3, 2.0, 0.3, 0.6

    def __init__(self, action_dim: int):
        self.sigma = None

    def start_episodes(self, envs, rng) -> None:
        if self.sigma is None:
            self.sigma = np.zeros(len(envs))
        self.sigma[envs] = rng.uniform(0.0, self.max_sigma, size=len(envs))

    def __call__(self, obs, rng):
        # Hopper-v5 obs: [z, torso angle, thigh, leg, foot, vx, vz, torso vel, joint vels (3)]
        joints, joint_vel = obs[:, 2:5], obs[:, 8:11]
        a = -self.kp * joints - self.kd * joint_vel
        a[:, 0] += self.torso_kp * obs[:, 1] + self.torso_kd * obs[:, 7]
        a += self.sigma[:, None] * rng.standard_normal(a.shape)
        return np.clip(a, -1.0, 1.0)


# env -> (gym id, action dim, gym kwargs matching configs/env/<env>.yaml)
TASKS = {"hopper": ("Hopper-v5", 3, {}), "walker2d": ("Walker2d-v5", 6, {}),
         "halfcheetah": ("HalfCheetah-v5", 6, {}),
         "ant": ("Ant-v5", 8, {"include_cfrc_ext_in_observation": False})}

for _env, (_gym_id, _act, _kwargs) in TASKS.items():
    register_dataset(f"{_env}-random")(Recipe(
        f"{_env}-random", _gym_id, "uniform random actions in [-1, 1]", UniformRandom, _act,
        _kwargs))

register_dataset("hopper-pd-noisy")(Recipe(
    "hopper-pd-noisy", "Hopper-v5",
    "PD balance controller, per-episode action noise sigma ~ U[0, 0.6]", NoisyHopperBalance, 3))

"""Datasets made here for the Gymnasium MuJoCo v5 tasks, by D4RL's recipes, with no network.

- `<env>-random`: an untrained policy (a randomly initialised SAC actor, sampled), as D4RL.
- `<env>-medium` / `<env>-expert`: the shipped SAC behaviour policy (envs/policies/), sampled;
  medium is the training snapshot where the run first reached a third of the expert's return
  (D4RL early-stopped its medium runs there).
- `<env>-medium-expert`: half medium, half expert, concatenated.
- `<env>-medium-replay`: what the SAC replay buffer held when the medium snapshot was taken:
  uniform random actions for the run's random phase, then each training policy (one shipped
  every 10k steps, float16) for the steps it acted, in order. D4RL's is the buffer itself;
  this re-creates its make-up (to 10k-step resolution) from policies small enough to ship.
  Its natural size is the medium snapshot's step count; `transitions` scales it down, never up.
- `hopper-pd-noisy`: a PD balance controller with per-episode Gaussian action noise,
  sigma ~ U[0, 0.6]. Noise-free it stands for the full 1000 steps (return about 1000, D4RL
  score about 31); with noise it falls early, so returns span about 10 to 1000. Cloning the
  data's mean action recovers the balancing controller: a task with a known good answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rlcore.data.collect import Behaviour, collect
from rlcore.data import DatasetError, OfflineDataset, concatenate
from rlcore.fileio import load_torch_file
from rlcore.agent.nets import TanhGaussianPolicy
from rlcore.registry import register_dataset

POLICY_DIR = Path(__file__).parent / "policies"


@dataclass(frozen=True)
class Recipe:
    name: str
    gym_id: str
    description: str
    behaviour: Callable[[int], Behaviour]  # seed -> behaviour
    gym_kwargs: dict = field(default_factory=dict)
    policies: tuple = ()                    # names of the shipped policy files it rolls out

    @property
    def shipped(self) -> tuple:
        """The policy files this recipe reads: their fingerprint is part of the cache id."""
        return tuple(POLICY_DIR / name for name in self.policies)

    def make(self, transitions: int, seed: int, progress: bool = True) -> OfflineDataset:
        return collect(self.name, self.gym_id, self.behaviour(seed), transitions, seed,
                       progress=progress, gym_kwargs=self.gym_kwargs,
                       metadata={"recipe": self.description})


@dataclass(frozen=True)
class Concatenation:
    """Equal parts of other recipes' datasets, one after another (D4RL's medium-expert)."""
    name: str
    gym_id: str
    description: str
    parts: tuple

    @property
    def gym_kwargs(self) -> dict:
        return self.parts[0].gym_kwargs

    @property
    def shipped(self) -> tuple:
        return tuple(path for part in self.parts for path in part.shipped)

    def make(self, transitions: int, seed: int, progress: bool = True) -> OfflineDataset:
        sizes = [transitions // len(self.parts)] * len(self.parts)
        sizes[-1] += transitions - sum(sizes)
        made = [part.make(n, seed + i, progress) for i, (part, n) in enumerate(zip(self.parts, sizes))]
        return concatenate(self.name, made, {"recipe": self.description, "gym_id": self.gym_id,
                                             "seed": seed})


class SampledActor:
    """Actions a = tanh(mu + sigma eps) from a SAC actor, eps drawn from the rollout's rng."""

    def __init__(self, actor: TanhGaussianPolicy):
        self.actor = actor.eval()

    def start_episodes(self, envs, rng) -> None:
        pass

    @torch.no_grad()
    def __call__(self, obs, rng):
        mean, log_std = self.actor(torch.as_tensor(obs, dtype=torch.float32))
        eps = torch.as_tensor(rng.standard_normal(mean.shape), dtype=torch.float32)
        return torch.tanh(mean + log_std.exp() * eps).numpy()


def untrained_actor(obs_dim: int, action_dim: int, seed: int) -> SampledActor:
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    actor = TanhGaussianPolicy(obs_dim, action_dim, [256, 256])
    torch.random.set_rng_state(generator_state)
    return SampledActor(actor)


def shipped_actor(env: str, quality: str) -> SampledActor:
    path = POLICY_DIR / f"{env}-{quality}.pt"
    if not path.exists():
        raise DatasetError(
            f"no {quality} behaviour policy for {env} is shipped yet ({path} is missing). Train "
            f"one: rlcore train agent=sac env={env}, then rlcore data export-policy <run dir> "
            f"--quality {quality}")
    state = load_torch_file(path, map_location="cpu")
    return sampled_actor(state, state["actor"])


def sampled_actor(state: dict, weights: dict) -> SampledActor:
    """A shipped SAC actor (sizes from `state`; float16 weights are widened)."""
    actor = TanhGaussianPolicy(state["obs_dim"], state["action_dim"], state["hidden"])
    actor.load_state_dict({k: v.float() for k, v in weights.items()})
    return SampledActor(actor)


class UniformRandom:
    """Uniform actions in [-1, 1] (SAC's random phase before its first update)."""

    def __init__(self, action_dim: int):
        self.action_dim = action_dim

    def start_episodes(self, envs, rng) -> None:
        pass

    def __call__(self, obs, rng):
        return rng.uniform(-1.0, 1.0, size=(len(obs), self.action_dim))


@dataclass(frozen=True)
class ReplaySchedule:
    """D4RL's medium-replay recipe, from the shipped replay schedule (see the module docstring)."""
    name: str
    gym_id: str
    description: str
    env: str
    gym_kwargs: dict = field(default_factory=dict)

    @property
    def shipped(self) -> tuple:
        return (POLICY_DIR / f"{self.env}-medium-replay.pt",)

    def make(self, transitions: int, seed: int, progress: bool = True) -> OfflineDataset:
        path, = self.shipped
        if not path.exists():
            raise DatasetError(f"no medium-replay schedule for {self.env} is shipped yet ({path} is "
                               f"missing); rlcore data export-policy <sac run dir> --quality medium "
                               "writes it next to the medium policy")
        state = load_torch_file(path, map_location="cpu")
        behaviours = [(state["random_steps"], UniformRandom(state["action_dim"]))]
        behaviours += [(phase["steps"], sampled_actor(state, phase["actor"])) for phase in state["phases"]]
        total = sum(n for n, _ in behaviours)
        scale = min(1.0, transitions / total)
        sizes = [max(1, int(n * scale)) for n, _ in behaviours]
        made = [collect(self.name, self.gym_id, behaviour, n, seed + i, progress=progress,
                        gym_kwargs=self.gym_kwargs)
                for i, (n, (_, behaviour)) in enumerate(zip(sizes, behaviours))]
        return concatenate(self.name, made, {"recipe": self.description, "gym_id": self.gym_id,
                                             "seed": seed, "medium_step": state["medium_step"]})


class NoisyHopperBalance:
    """a = clip(-kp q - kd qdot (+ torso correction on the thigh) + sigma_ep N(0, I), -1, 1)."""

    kp, kd, torso_kp, torso_kd, max_sigma = 4.0, 0.3, 2.0, 0.3, 0.6

    def __init__(self, seed: int = 0):
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


# env -> (gym id, observation dim, action dim, gym kwargs matching configs/env/<env>.yaml)
TASKS = {"hopper": ("Hopper-v5", 11, 3, {}), "walker2d": ("Walker2d-v5", 17, 6, {}),
         "halfcheetah": ("HalfCheetah-v5", 17, 6, {}),
         "ant": ("Ant-v5", 27, 8, {"include_cfrc_ext_in_observation": False})}


def _register(env: str, gym_id: str, obs_dim: int, action_dim: int, kwargs: dict) -> None:
    def recipe(quality: str, description: str, behaviour, policies: tuple = ()) -> Recipe:
        return register_dataset(f"{env}-{quality}")(
            Recipe(f"{env}-{quality}", gym_id, description, behaviour, kwargs, policies))

    recipe("random", "untrained SAC actor (random init), sampled",
           lambda seed: untrained_actor(obs_dim, action_dim, seed))
    medium = recipe("medium", "SAC snapshot where training first reached 1/3 of the expert's return, sampled",
                    lambda seed: shipped_actor(env, "medium"), (f"{env}-medium.pt",))
    expert = recipe("expert", "fully trained SAC policy, sampled",
                    lambda seed: shipped_actor(env, "expert"), (f"{env}-expert.pt",))
    register_dataset(f"{env}-medium-replay")(ReplaySchedule(
        f"{env}-medium-replay", gym_id, "SAC's buffer up to the medium snapshot, re-rolled by its "
        "policies", env, kwargs))
    register_dataset(f"{env}-medium-expert")(Concatenation(
        f"{env}-medium-expert", gym_id, "medium and expert halves, concatenated", (medium, expert)))


for _env, _task in TASKS.items():
    _register(_env, *_task)

register_dataset("hopper-pd-noisy")(Recipe(
    "hopper-pd-noisy", "Hopper-v5",
    "PD balance controller, per-episode action noise sigma ~ U[0, 0.6]", NoisyHopperBalance))

"""On-policy data: whole episodes of the current policy from a Gymnasium vector env.

garage's sampler, which the policy-gradient papers' code uses, runs complete episodes until the
batch holds at least `batch_steps` timesteps. Here several episodes run side by side: a new
episode joins the batch only if, when it starts, the finished episodes and the ones still
running hold fewer than `batch_steps` steps. Whether an episode joins depends only on episodes
before it, never on its own length, so the batch's episodes are distributed as the policy's
episodes are (stopping as soon as enough steps are in would favour short episodes). The batch
runs min(batch_steps // horizon, max_envs) envs, at least one: never more side by side than the
batch needs full-length episodes, so a 32-step Hessian batch is one episode, as in garage.

Each call resets its envs from a seed it is given, so a resumed run samples exactly the episodes
the uninterrupted run would have.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from rlcore.data.collect import make_vector_env


@dataclass
class EpisodeBatch:
    """N whole episodes, padded to the longest: observations [N, T, obs], actions [N, T, act]
    (discrete: [N, T] indices), rewards [N, T], mask [N, T] (True on real steps)."""
    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)

    @property
    def steps(self) -> int:
        return int(self.mask.sum())

    @property
    def episodes(self) -> int:
        return self.mask.shape[0]

    def returns(self) -> torch.Tensor:
        """Undiscounted return of each episode [N]."""
        return (self.rewards * self.mask).sum(1)


class EpisodeSampler:
    """Samples `EpisodeBatch`es of a stochastic policy on `device`.

    `policy(obs [n, obs]) -> actions` draws actions; continuous actions are clipped to the
    action box for the env and stored unclipped (their log-likelihood is the policy's).
    """

    def __init__(self, gym_id: str, horizon: int, device: torch.device, max_envs: int = 16,
                 gym_kwargs: dict | None = None):
        self.gym_id, self.horizon, self.device, self.max_envs = gym_id, horizon, device, max_envs
        self.gym_kwargs = {**(gym_kwargs or {}), "max_episode_steps": horizon}
        self.envs: dict[int, gym.vector.VectorEnv] = {}

    def _env(self, n: int) -> gym.vector.VectorEnv:
        if n not in self.envs:
            self.envs[n] = make_vector_env(self.gym_id, n, **self.gym_kwargs)
        return self.envs[n]

    def envs_for(self, batch_steps: int) -> int:
        return int(np.clip(batch_steps // self.horizon, 1, self.max_envs))

    @torch.no_grad()
    def __call__(self, policy: Callable[[torch.Tensor], torch.Tensor], batch_steps: int,
                 seed: int) -> EpisodeBatch:
        n = self.envs_for(batch_steps)
        env = self._env(n)
        space = env.single_action_space
        discrete = isinstance(space, gym.spaces.Discrete)
        obs, _ = env.reset(seed=[seed + i for i in range(n)])
        running = [dict(o=[], a=[], r=[]) for _ in range(n)]
        joined = np.ones(n, dtype=bool)        # env i's current episode is in the batch
        finished, finished_steps = [], 0
        while joined.any():
            actions = policy(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
            actions = actions.cpu().numpy()
            to_env = actions if discrete else np.clip(actions, space.low, space.high)
            next_obs, rewards, terminated, truncated, _ = env.step(to_env)
            ended = terminated | truncated
            for i in np.flatnonzero(joined):
                ep = running[i]
                ep["o"].append(obs[i])
                ep["a"].append(actions[i])
                ep["r"].append(rewards[i])
                if ended[i]:
                    finished.append(ep)
                    finished_steps += len(ep["r"])
                    running[i] = dict(o=[], a=[], r=[])
            for i in np.flatnonzero(ended):    # autoreset: next_obs[i] starts a new episode
                in_progress = sum(len(running[j]["r"]) for j in range(n) if joined[j] and j != i)
                joined[i] = finished_steps + in_progress < batch_steps
            obs = next_obs                     # SAME_STEP autoreset: already the new episode's
        return self._pad(finished, discrete)

    def _pad(self, episodes: list[dict], discrete: bool) -> EpisodeBatch:
        longest = max(len(ep["r"]) for ep in episodes)

        def padded(key: str, dtype) -> torch.Tensor:
            first = np.asarray(episodes[0][key][0])
            out = np.zeros((len(episodes), longest, *first.shape), dtype=dtype)
            for k, ep in enumerate(episodes):
                out[k, :len(ep[key])] = np.asarray(ep[key])
            return torch.as_tensor(out, device=self.device)

        lengths = torch.tensor([len(ep["r"]) for ep in episodes], device=self.device)
        mask = torch.arange(longest, device=self.device) < lengths[:, None]
        return EpisodeBatch(padded("o", np.float32), padded("a", np.int64 if discrete else np.float32),
                            padded("r", np.float32), mask)

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()

"""Roll a behaviour policy out in a Gymnasium vector env and keep whole episodes."""
from __future__ import annotations

from typing import Protocol

import gymnasium as gym
import numpy as np

from rlcore.data import OfflineDataset, from_arrays
from rlcore.logger import progress_bar


class Behaviour(Protocol):
    def start_episodes(self, envs: np.ndarray, rng: np.random.Generator) -> None:
        """Draw per-episode parameters for the env indices `envs`."""

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Actions for a batch of observations."""


def make_vector_env(gym_id: str, num_envs: int, **kwargs) -> gym.vector.VectorEnv:
    return gym.make_vec(gym_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
                        **kwargs)


def collect(name: str, gym_id: str, behaviour: Behaviour, transitions: int, seed: int,
            num_envs: int = 16, progress: bool = True, gym_kwargs: dict | None = None,
            metadata: dict | None = None) -> OfflineDataset:
    """`transitions` steps of whole episodes, in the order they finished; deterministic in seed.

    The last episode is cut to fit and its final step marked as a timeout, as in D4RL.
    """
    env = make_vector_env(gym_id, num_envs, **(gym_kwargs or {}))
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    behaviour.start_episodes(np.arange(num_envs), rng)
    open_eps = [dict(o=[], a=[], r=[], n=[], d=[], t=[]) for _ in range(num_envs)]
    done_eps, total = [], 0
    bar = progress_bar(total=transitions, desc=f"making {name}", unit="step", disable=not progress)
    while total < transitions:
        actions = np.asarray(behaviour(obs, rng), dtype=np.float32)
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        ended = terminated | truncated
        final = next_obs.copy()
        if ended.any():
            final[ended] = np.stack(info["final_obs"][ended])
        for i in range(num_envs):
            ep = open_eps[i]
            for key, value in zip("oarndt", (obs[i], actions[i], rewards[i], final[i],
                                             terminated[i], truncated[i] and not terminated[i])):
                ep[key].append(value)
            if ended[i]:
                done_eps.append(ep)
                bar.update(max(0, min(len(ep["r"]), transitions - total)))
                total += len(ep["r"])
                open_eps[i] = dict(o=[], a=[], r=[], n=[], d=[], t=[])
        if ended.any():
            behaviour.start_episodes(np.flatnonzero(ended), rng)
        obs = next_obs
    bar.close()
    env.close()
    cat = {k: np.concatenate([np.asarray(ep[k]) for ep in done_eps])[:transitions] for k in "oarndt"}
    if not cat["d"][-1]:
        cat["t"][-1] = True
    return from_arrays(name, {"observations": cat["o"], "actions": cat["a"], "rewards": cat["r"],
                              "next_observations": cat["n"], "terminals": cat["d"],
                              "timeouts": cat["t"]},
                       {"gym_id": gym_id, "seed": seed, **(metadata or {})})

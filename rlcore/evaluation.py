"""Evaluation: N episodes per seed at once in one Gymnasium vector env, one batched forward
per step for all seeds (a K-seed agent sees [K, N, obs] and answers [K, N, action])."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from rlcore.collect import make_vector_env
from rlcore.scores import Reference


class Evaluator:
    def __init__(self, gym_id: str, episodes: int, reference: Reference, device: torch.device,
                 gym_kwargs: dict | None = None, seeds: int = 1):
        self.env = make_vector_env(gym_id, episodes * seeds, **(gym_kwargs or {}))
        self.episodes, self.seeds, self.reference, self.device = episodes, seeds, reference, device

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.env.single_observation_space.shape))

    def __call__(self, agent, seed: int | Sequence[int]) -> list[dict]:
        """One result per agent seed: its `episodes` episodes, sub-env i of seed k reset with
        env seed seed[k] + i (as a one-seed run from seed[k] would be)."""
        base = [seed] * self.seeds if isinstance(seed, int) else list(seed)
        if len(base) != self.seeds:
            raise ValueError(f"{len(base)} evaluation seeds for a {self.seeds}-seed evaluator")
        n = self.seeds * self.episodes
        obs, _ = self.env.reset(seed=[b + i for b in base for i in range(self.episodes)])
        returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        running = np.ones(n, dtype=bool)
        low, high = self.env.single_action_space.low, self.env.single_action_space.high
        shape = (self.seeds, self.episodes, -1) if agent.multi_seed else (n, -1)
        while running.any():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(shape)
            action = agent.act(obs_t, deterministic=True).reshape(n, -1).cpu().numpy()
            obs, reward, terminated, truncated, _ = self.env.step(np.clip(action, low, high))
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
        blocks = [slice(k * self.episodes, (k + 1) * self.episodes) for k in range(self.seeds)]
        return [self._summary(returns[b], lengths[b]) for b in blocks]

    def _summary(self, returns: np.ndarray, lengths: np.ndarray) -> dict:
        scores = self.reference.normalize(returns)
        return {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
                "score_mean": float(scores.mean()), "score_std": float(scores.std()),
                "length_mean": float(lengths.mean()), "episodes": self.episodes}

    def close(self) -> None:
        self.env.close()

"""Evaluation: N episodes at once in a Gymnasium vector env, one batched forward per step."""
from __future__ import annotations

import numpy as np
import torch

from rlcore.collect import make_vector_env
from rlcore.scores import Reference


class Evaluator:
    def __init__(self, gym_id: str, episodes: int, reference: Reference, device: torch.device,
                 gym_kwargs: dict | None = None):
        self.env = make_vector_env(gym_id, episodes, **(gym_kwargs or {}))
        self.episodes, self.reference, self.device = episodes, reference, device

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.env.single_observation_space.shape))

    def __call__(self, agent, seed: int) -> dict:
        """Run one episode per sub-env from `seed`; returns returns, lengths and D4RL scores."""
        obs, _ = self.env.reset(seed=seed)
        returns = np.zeros(self.episodes)
        lengths = np.zeros(self.episodes, dtype=np.int64)
        running = np.ones(self.episodes, dtype=bool)
        low, high = self.env.single_action_space.low, self.env.single_action_space.high
        while running.any():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            action = agent.act(obs_t, deterministic=True).cpu().numpy()
            obs, reward, terminated, truncated, _ = self.env.step(np.clip(action, low, high))
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
        scores = self.reference.normalize(returns)
        return {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
                "score_mean": float(scores.mean()), "score_std": float(scores.std()),
                "length_mean": float(lengths.mean()), "episodes": self.episodes}

    def close(self) -> None:
        self.env.close()

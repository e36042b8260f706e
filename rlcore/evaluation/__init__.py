"""Evaluation: N episodes per seed at once in one Gymnasium vector env, one batched forward
per step for all seeds (a K-seed agent sees [K, N, obs] and answers [K, N, action])."""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch

from rlcore.data.collect import make_vector_env
from rlcore.evaluation.scores import SUCCESS, Reference


def seed_list(seed: int | Sequence[int], seeds: int) -> list[int]:
    """One base env seed per agent seed (an int: the same for all)."""
    base = [seed] * seeds if isinstance(seed, int) else list(seed)
    if len(base) != seeds:
        raise ValueError(f"{len(base)} evaluation seeds for a {seeds}-seed evaluator")
    return base


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
        base = seed_list(seed, self.seeds)
        n = self.seeds * self.episodes
        obs, _ = self.env.reset(seed=[b + i for b in base for i in range(self.episodes)])
        returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        running, success = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
        reports_success = False
        space = self.env.single_action_space
        discrete = isinstance(space, gym.spaces.Discrete)
        shape = (self.seeds, self.episodes, -1) if agent.multi_seed else (n, -1)
        while running.any():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(shape)
            action = agent.act(obs_t, deterministic=True).cpu().numpy()
            action = action.reshape(n) if discrete else np.clip(action.reshape(n, -1), space.low, space.high)
            obs, reward, terminated, truncated, info = self.env.step(action)
            if "success" in info:          # Meta-World: success at any step counts
                reports_success = True
                success |= (np.asarray(info["success"]) > 0) & info.get("_success", True) & running
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
        blocks = [slice(k * self.episodes, (k + 1) * self.episodes) for k in range(self.seeds)]
        return [self._summary(returns[b], lengths[b], success[b] if reports_success else None)
                for b in blocks]

    def _summary(self, returns: np.ndarray, lengths: np.ndarray,
                 success: np.ndarray | None = None) -> dict:
        """Returns and D4RL scores; with an env that reports success, its rate too, and the
        rate in percent is the score where the env's score family is `success`."""
        if success is not None and self.reference == SUCCESS:
            scores = 100.0 * success
        else:
            scores = self.reference.normalize(returns)
        result = {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
                  "score_mean": float(scores.mean()), "score_std": float(scores.std()),
                  "length_mean": float(lengths.mean()), "episodes": self.episodes}
        if success is not None:
            result["success_rate"] = float(success.mean())
        return result

    def close(self) -> None:
        self.env.close()


class GoalEvaluator:
    """OGBench's protocol: each evaluation task k (`reset(options=dict(task_id=k))`, whose info
    carries the goal state) for `episodes` episodes per seed, in one vector env; an episode
    succeeds when the env ends it at the goal (OGBench's envs terminate on success, so
    `terminated` is their final info['success']). Reports the success rate per task and over
    all tasks; `score_mean` is the overall rate in percent, the figure OGBench tables show."""

    def __init__(self, gym_id: str, episodes: int, device: torch.device, tasks: Sequence[int],
                 gym_kwargs: dict | None = None, seeds: int = 1):
        from rlcore.envs.ogbench import import_ogbench
        import_ogbench()
        self.env = make_vector_env(gym_id, episodes * seeds, **(gym_kwargs or {}))
        self.gym_id, self.tasks = gym_id, list(tasks)
        self.episodes, self.seeds, self.device = episodes, seeds, device
        known = getattr(self.env.unwrapped.envs[0].unwrapped, "task_infos", None)
        if known is None:
            self.close()
            raise ValueError(f"{gym_id} has no evaluation tasks (task_infos); goal-conditioned "
                             "evaluation needs an OGBench env")
        bad = [k for k in self.tasks if not 1 <= k <= len(known)]
        if bad:
            self.close()
            raise ValueError(f"{gym_id} has no evaluation task {bad[0]}; its tasks are "
                             f"1-{len(known)} (env.goal_tasks)")

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.env.single_observation_space.shape))

    def __call__(self, agent, seed: int | Sequence[int]) -> list[dict]:
        base = seed_list(seed, self.seeds)
        per_task = [self._task(agent, task, base) for task in self.tasks]   # [tasks] of [n]
        blocks = [slice(k * self.episodes, (k + 1) * self.episodes) for k in range(self.seeds)]
        return [self._summary([(s[b], r[b], n[b]) for s, r, n in per_task]) for b in blocks]

    def _task(self, agent, task: int, base: list[int]):
        n = self.seeds * self.episodes
        seeds = [b + 1000 * task + i for b in base for i in range(self.episodes)]
        obs, info = self.env.reset(seed=seeds, options=dict(task_id=task))
        if hasattr(agent, "begin_episodes"):        # an agent that acts on a history (GCDT)
            agent.begin_episodes()
        goal = torch.as_tensor(np.asarray(info["goal"]), dtype=torch.float32, device=self.device)
        success, returns = np.zeros(n, dtype=bool), np.zeros(n)
        lengths, running = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
        shape = (self.seeds, self.episodes, -1) if agent.multi_seed else (n, -1)
        goal = goal.reshape(shape)
        while running.any():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(shape)
            action = agent.act(obs_t, deterministic=True, goals=goal).reshape(n, -1).cpu().numpy()
            obs, reward, terminated, truncated, _ = self.env.step(action)
            success |= terminated & running
            returns += reward * running
            lengths += running
            running &= ~(terminated | truncated)
        return success, returns, lengths

    def _summary(self, tasks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
        rates = [float(s.mean()) for s, _, _ in tasks]
        result = {"score_mean": 100.0 * float(np.mean(rates)),
                  "score_std": 100.0 * float(np.std(np.concatenate([s for s, _, _ in tasks]))),
                  "success_rate": float(np.mean(rates)),
                  "return_mean": float(np.mean(np.concatenate([r for _, r, _ in tasks]))),
                  "length_mean": float(np.mean(np.concatenate([n for _, _, n in tasks]))),
                  "episodes": self.episodes * len(tasks)}
        result.update({f"success_task{k}": rate for k, rate in zip(self.tasks, rates)})
        return result

    def close(self) -> None:
        self.env.close()

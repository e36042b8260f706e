"""Online data collection: one environment step per training step, into the shared buffer."""
from __future__ import annotations

import numpy as np
import torch

from rlcore.data.collect import make_vector_env


class OnlineCollector:
    """Uniform random actions for `agent.start_steps`, then the agent's stochastic policy;
    every transition goes to the buffer (terminals and time-limit cuts kept apart), and
    updates start once the buffer holds `agent.update_after` transitions.

    A resumed online run keeps its buffer and networks but starts a fresh episode: the
    simulator's mid-episode state is not checkpointed.
    """

    def __init__(self, setup, update):
        from rlcore.training.trainer import gym_kwargs
        cfg = setup.cfg
        self.setup, self.agent_cfg, self.update = setup, cfg.agent, update
        self.env = make_vector_env(cfg.env.gym_id, 1, **gym_kwargs(cfg))
        self.rng = np.random.default_rng(cfg.seed)
        self.obs, _ = self.env.reset(seed=cfg.seed)
        self.low, self.high = self.env.single_action_space.low, self.env.single_action_space.high
        self.episode_return, self.finished = 0.0, []

    def __call__(self, step: int) -> dict | None:
        setup, cfg = self.setup, self.agent_cfg
        if step <= cfg.start_steps:
            action = self.rng.uniform(self.low, self.high, size=(1, len(self.low)))
        else:
            obs = torch.as_tensor(self.obs, dtype=torch.float32, device=setup.device)
            action = setup.agent.act(obs, deterministic=False).cpu().numpy()
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        final = np.stack(info["final_obs"]) if (terminated | truncated)[0] else next_obs
        setup.buffer.add({"observations": self.obs, "actions": action, "rewards": reward,
                          "next_observations": final, "terminals": terminated,
                          "timeouts": truncated & ~terminated})
        self.episode_return += float(reward[0])
        if (terminated | truncated)[0]:
            self.finished.append(self.episode_return)
            self.episode_return = 0.0
        self.obs = next_obs
        if len(setup.buffer) < cfg.update_after:
            return None
        return self.update(setup.agent.sample(setup.buffer, cfg.batch_size))

    def stats(self) -> dict:
        """Mean return of the training episodes finished since the last call."""
        out = {"episode_return": float(np.mean(self.finished))} if self.finished else {}
        self.finished = []
        return out

    def close(self) -> None:
        self.env.close()

"""The on-policy loop: one training step is one iteration of the agent's method, on episodes it
samples itself at the parameters it chooses (rlcore.agent.policy_gradient). Environment steps,
all batches counted (IGT's extrapolated batch, HARPG's Hessian batch), are the x-axis the
policy-gradient literature plots against; each iteration logs its first batch's mean return.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from rlcore.data.episodes import EpisodeBatch, EpisodeSampler


def batch_seed(seed: int, iteration: int, call: int) -> int:
    """The env seed of an iteration's `call`-th batch: fixed by (run seed, iteration, call), so a
    resumed run samples what the uninterrupted one would have."""
    return int(np.random.SeedSequence([seed, iteration, call]).generate_state(1)[0] >> 1)


class OnPolicyLoop:
    def __init__(self, setup, horizon: int, gym_kwargs: dict):
        cfg = setup.cfg
        self.agent, self.seed = setup.agent, int(cfg.seed)
        self.sampler = EpisodeSampler(cfg.env.gym_id, horizon, setup.device,
                                      int(cfg.agent.max_envs), gym_kwargs)
        self.env_steps = 0
        self.returns: list[float] = []          # first batches' episode returns since the last log
        self.timing = {"sample_s": 0.0, "iteration_s": 0.0}
        self.iterations = 0

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        calls = 0
        sample_time = 0.0

        def sample(batch_steps: int) -> EpisodeBatch:
            nonlocal calls, sample_time
            start = time.perf_counter()
            batch = self.sampler(self.agent.explore, batch_steps, batch_seed(self.seed, step, calls))
            sample_time += time.perf_counter() - start
            if calls == 0:
                self.returns.extend(batch.returns().tolist())
            calls += 1
            self.env_steps += batch.steps
            return batch

        start = time.perf_counter()
        metrics = self.agent.iterate(sample)
        self.timing["iteration_s"] += time.perf_counter() - start
        self.timing["sample_s"] += sample_time
        self.iterations += 1
        return metrics

    def stats(self) -> dict:
        """Since the last call: the sampled episodes' mean return, seconds per iteration (all of
        it, and the part spent sampling), and the environment steps so far."""
        out = {"env_steps": self.env_steps}
        if self.returns:
            out["episode_return"] = float(np.mean(self.returns))
        if self.iterations:
            out.update({k: v / self.iterations for k, v in self.timing.items()})
        self.returns, self.iterations = [], 0
        self.timing = dict.fromkeys(self.timing, 0.0)
        return out

    def progress(self) -> dict:
        return {"env_steps": self.env_steps}

    def state_dict(self) -> dict:
        return {"env_steps": self.env_steps}

    def load_state_dict(self, state: dict) -> None:
        self.env_steps = int(state["env_steps"])

    def close(self) -> None:
        self.sampler.close()

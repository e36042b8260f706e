"""rlcore: offline, goal-conditioned, preference-based and on-policy reinforcement learning on
PyTorch.

    import rlcore
    setup = rlcore.make("odice", "hopper", "trainer.steps=20000", seed=1)   # agent + buffer
    for _ in range(1000):
        setup.agent.update(setup.agent.sample(setup.buffer, 256))
    print(setup.evaluate(episodes=10))            # returns and D4RL normalized score
    [result] = rlcore.train("odice", "hopper", "trainer.steps=20000")     # the CLI's loop
    results = rlcore.train("odice", "hopper", "trainer.steps=20000", seeds=4)  # 4 seeds at once
    loop = rlcore.make("nharpg", "cartpole").on_policy_loop()   # on-policy: loop(t), t = 1, 2, ...
"""
from __future__ import annotations

from rlcore.agent import Agent, Spec
from rlcore.training.buffer import Buffer
from rlcore.config import load_config
from rlcore.data import OfflineDataset, load_hdf5, save_hdf5
from rlcore.data.datasets import load_dataset
from rlcore.registry import AGENTS, DATASETS, register_agent, register_dataset
from rlcore.training.trainer import RunResult, Setup, prepare
from rlcore.training.trainer import train as _train_cfg

__all__ = ["Agent", "Buffer", "OfflineDataset", "RunResult", "Setup", "Spec", "load_config",
           "load_dataset", "load_hdf5", "save_hdf5", "make", "train", "list_agents",
           "list_datasets", "register_agent", "register_dataset"]


def _config(agent: str, env: str, overrides: tuple[str, ...], kwargs: dict):
    items = [f"agent={agent}", f"env={env}", *overrides]
    items += [f"{key}={value}" for key, value in kwargs.items()]
    return load_config(items)


def make(agent: str = "odice", env: str = "hopper", *overrides: str, **kwargs) -> Setup:
    """Agent, preprocessed buffer and score reference, from the same config as the CLI.

    `overrides` are CLI-style strings ("agent.lam=0.5"); `kwargs` top-level keys (seed=1).
    """
    return prepare(_config(agent, env, overrides, kwargs))


def train(agent: str = "odice", env: str = "hopper", *overrides: str, **kwargs) -> list[RunResult]:
    """Exactly `rlcore train agent=... env=... overrides...`: run folder, metrics, plot,
    checkpoints. One RunResult per seed (`seeds=3` trains three at once)."""
    return _train_cfg(_config(agent, env, overrides, kwargs))


def list_agents() -> list[str]:
    return AGENTS.names()


def list_datasets() -> list[str]:
    return DATASETS.names()

"""`seeds=K`: K independent agents trained at once in one process.

The agent is built once with `Spec.seeds = K` (member-batched networks, see rlcore.agent), and
seed k's slice of every parameter is then overwritten with the initialisation a one-seed run
with seed k would have drawn. So each seed starts exactly where its own run would start,
samples its own minibatches, is evaluated on its own episodes (with its own run's env seeds),
and shares nothing with the others; only the minibatch stream differs from a separate run
(one device generator draws all seeds' indices).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
from omegaconf import DictConfig, ListConfig
from torch import nn

from rlcore.errors import ConfigError


def resolve_seeds(cfg: DictConfig) -> list[int]:
    """`seeds: null` -> [seed]; `seeds: K` -> [seed, ..., seed + K - 1]; a list as given."""
    seeds = cfg.get("seeds")
    if seeds is None:
        return [int(cfg.seed)]
    if isinstance(seeds, (list, tuple, ListConfig)):
        values = list(seeds)
    elif isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        values = [int(cfg.seed) + k for k in range(seeds)]
    else:
        raise ConfigError(f"seeds={seeds!r}; give a count (seeds=8) or a list (seeds=[0,3,5])")
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values) \
            or len(set(values)) != len(values):
        raise ConfigError(f"seeds={seeds!r}: need distinct integers, e.g. seeds=[0,1,2]")
    return values


@torch.no_grad()
def copy_seed_into(stacked: nn.Module, single: nn.Module, k: int) -> None:
    """Write a one-seed agent's parameters and buffers into seed k's slice of a stacked one.

    Tensors of equal shape are shared by all seeds (an observation normaliser) and copied whole.
    """
    target = nn.Module.state_dict(stacked, keep_vars=True)
    for name, value in nn.Module.state_dict(single, keep_vars=True).items():
        dest = target[name]
        if not isinstance(value, torch.Tensor):   # a module's extra state (a counter): shared
            continue
        if dest.shape == value.shape:
            dest.copy_(value)
            continue
        m = value.shape[0]
        if dest.dim() == 0 or dest.shape[1:] != value.shape[1:] or dest.shape[0] % m:
            raise ValueError(f"{name}: {tuple(dest.shape)} is not seed-stacked {tuple(value.shape)}")
        dest[k * m:(k + 1) * m].copy_(value)


def build_seeded(make: Callable, spec, seeds: list[int], multi_seed: bool):
    """`make(spec)` for seeds[0] alone, or K seeds stacked, each with its own run's init."""
    if len(seeds) > 1 and not multi_seed:
        raise ConfigError(f"seeds={seeds}: this agent trains one seed per process; "
                          "run the seeds as a sweep instead (rlcore train -m seed=0,1,2)")
    torch.manual_seed(seeds[0])
    if not multi_seed or len(seeds) == 1:
        return make(replace(spec, seeds=1))
    stacked = make(replace(spec, seeds=len(seeds)))
    for k, seed in enumerate(seeds):
        torch.manual_seed(seed)
        copy_seed_into(stacked, make(replace(spec, seeds=1)), k)
    return stacked

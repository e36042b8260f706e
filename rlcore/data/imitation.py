"""Imitation data: k expert episodes, optionally mixed with a suboptimal dataset.

The offline-IL setting of ReCOIL and O-DICE's imitation variant (and SMODICE before them): a
handful of expert trajectories plus plentiful suboptimal data, no rewards. Selected with
`env.dataset=<expert data> env.expert_episodes=k [env.expert_first=i] [env.suboptimal=<name>]`.
The mixture is the suboptimal data followed by the expert episodes (so it contains them, as
d_mix = beta d^E + (1 - beta) d^S); `expert_mask` marks the expert transitions, and the
buffer keeps them as its "expert" subset.
"""
from __future__ import annotations

import numpy as np

from rlcore.data import DatasetError, OfflineDataset, concatenate


def complete_episodes(dataset: OfflineDataset) -> list[tuple[int, int]]:
    """(start, end) of every episode that ends in a terminal or a time limit."""
    done = dataset.terminals | dataset.timeouts
    return [(int(s), int(e)) for s, e in zip(dataset.episode_starts(), dataset.episode_ends())
            if done[e - 1]]


def expert_mix(expert: OfflineDataset, episodes: int, first: int = 0,
               suboptimal: OfflineDataset | None = None) -> tuple[OfflineDataset, np.ndarray]:
    """(mixture, expert_mask): expert episodes first .. first + episodes - 1 (complete ones, in
    the file's order) after the suboptimal data, if any."""
    found = complete_episodes(expert)
    if episodes < 1 or first < 0 or first + episodes > len(found):
        raise DatasetError(f"env.expert_episodes={episodes}, env.expert_first={first}: "
                           f"{expert.name} has {len(found)} complete episodes (0..{len(found) - 1})")
    index = np.concatenate([np.arange(s, e) for s, e in found[first:first + episodes]])
    name = f"{expert.name}[{first}:{first + episodes}]"
    parts = [OfflineDataset(name, **{k: v[index] for k, v in expert.arrays().items()})]
    if suboptimal is not None:
        if (suboptimal.obs_dim, suboptimal.action_dim) != (expert.obs_dim, expert.action_dim):
            raise DatasetError(f"env.suboptimal={suboptimal.name} has obs/action sizes "
                               f"{suboptimal.obs_dim}/{suboptimal.action_dim}, the expert data "
                               f"{expert.obs_dim}/{expert.action_dim}; use data of the same env")
        parts.insert(0, suboptimal)
        name = f"{name}+{suboptimal.name}"
    mixture = concatenate(name, parts, expert.metadata)
    mask = np.zeros(len(mixture), dtype=bool)
    mask[len(mixture) - len(index):] = True
    return mixture, mask


def imitation_data(cfg, dataset: OfflineDataset, progress: bool = True) -> tuple[OfflineDataset, dict]:
    """(data, buffer subsets) for the config: the mixture and its "expert" indices when
    `env.expert_episodes` is set, else the dataset as it is and no subsets."""
    if not cfg.env.get("expert_episodes"):
        return dataset, {}
    from rlcore.data.datasets import load_dataset
    suboptimal = cfg.env.get("suboptimal")
    if suboptimal:
        suboptimal = load_dataset(str(suboptimal), cfg.data.transitions, cfg.data.seed,
                                  cfg.data.dir, progress=progress)
    mixture, expert_mask = expert_mix(dataset, int(cfg.env.expert_episodes),
                                      int(cfg.env.get("expert_first") or 0), suboptimal or None)
    return mixture, {"expert": np.flatnonzero(expert_mask)}

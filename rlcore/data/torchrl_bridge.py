"""rlcore datasets and TorchRL replay buffers, both ways (the `torchrl` extra).

TorchRL's offline datasets (D4RLExperienceReplay, MinariExperienceReplay, ...) and its losses
use one TensorDict layout per transition: `observation`, `action`, and under `next`:
`observation`, `reward`, `done`, `terminated`, `truncated` ([N, 1] rewards and flags).

    rb = to_torchrl_buffer(rlcore.load_dataset("hopper-medium"), batch_size=256)
    rb.sample()                                  # train any TorchRL loss on rlcore's data
    data = from_torchrl(D4RLExperienceReplay("hopper-medium-v2", batch_size=256))
    buffer = rlcore.Buffer.from_dataset(data)    # train any rlcore agent on TorchRL's data
"""
from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict

from rlcore.data import DatasetError, OfflineDataset, from_arrays


def _torchrl():
    try:
        import torchrl.data
    except ImportError:
        raise DatasetError("the TorchRL bridge needs torchrl: pip install -e \".[torchrl]\"") from None
    return torchrl.data


def to_tensordict(dataset: OfflineDataset, device: torch.device | str = "cpu") -> TensorDict:
    """The dataset in TorchRL's transition layout ([N] batch)."""
    t = {k: torch.as_tensor(v, device=device) for k, v in dataset.arrays().items()}
    terminated, truncated = t["terminals"].bool()[:, None], t["timeouts"].bool()[:, None]
    return TensorDict({"observation": t["observations"], "action": t["actions"],
                       "next": {"observation": t["next_observations"], "reward": t["rewards"][:, None],
                                "terminated": terminated, "truncated": truncated,
                                "done": terminated | truncated}},
                      batch_size=[len(dataset)], device=device)


def to_torchrl_buffer(dataset: OfflineDataset, batch_size: int = 256,
                      device: torch.device | str = "cpu"):
    """A TorchRL TensorDictReplayBuffer holding the whole dataset (uniform sampling)."""
    data = _torchrl()
    storage = data.LazyTensorStorage(len(dataset), device=device)
    buffer = data.TensorDictReplayBuffer(storage=storage, batch_size=batch_size)
    buffer.extend(to_tensordict(dataset, device))
    return buffer


def from_torchrl(source, name: str = "torchrl") -> OfflineDataset:
    """An rlcore dataset from a TorchRL replay buffer (its whole storage) or a TensorDict of
    transitions in TorchRL's layout; `truncated` (or `done` and not `terminated`) is a timeout."""
    td = source if isinstance(source, TensorDict) else source[:]
    missing = [k for k in ("observation", "action", ("next", "observation"), ("next", "reward"))
               if k not in td.keys(include_nested=True)]
    if missing:
        raise DatasetError(f"{name}: a TorchRL transition needs observation, action, "
                           f"next.observation and next.reward; missing {missing}")
    nxt = td["next"]
    terminated = nxt.get("terminated", nxt.get("done", None))
    if terminated is None:
        raise DatasetError(f"{name}: needs next.terminated (or next.done) to tell terminals")
    truncated = nxt.get("truncated", None)
    if truncated is None:
        truncated = nxt.get("done", terminated) & ~terminated.bool()

    def numpy(x) -> np.ndarray:
        return x.detach().cpu().numpy()
    arrays = {"observations": numpy(td["observation"]), "actions": numpy(td["action"]),
              "rewards": numpy(nxt["reward"]).reshape(-1),
              "next_observations": numpy(nxt["observation"]),
              "terminals": numpy(terminated).reshape(-1).astype(np.float32),
              "timeouts": numpy(truncated).reshape(-1).astype(np.float32)}
    return from_arrays(name, arrays)

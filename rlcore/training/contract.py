"""Checks of the agent contract that a CUDA graph relies on, runnable on the CPU (for a new
agent, before any GPU sees it; tests/test_capture_contract.py runs them on every registered
agent):

- `HostSyncs`: a dispatch mode that records every op inside it which makes the host wait for
  a tensor's value (.item(), float(), int(), a Python branch on a tensor) or whose output size
  depends on values (nonzero, boolean-mask indexing, unique, masked_select), and every tensor
  made from host data (torch.tensor, as_tensor, from_numpy: on a GPU, a copy from the host).
  A capture fails on them, or freezes what it read at capture time;
- `python_state`: the agent's plain Python attributes and optimizer hyperparameters, which a
  replayed graph cannot change: they must come back every `update_cycle` updates.

Device copies inside an update (a tensor made on the CPU and moved) need a GPU to be seen.
"""
from __future__ import annotations

import traceback
from pathlib import Path

import tensordict
import torch
from omegaconf import DictConfig
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
HOST_SYNC_OPS = {aten._local_scalar_dense.default, aten.is_nonzero.default,
                 aten.nonzero.default, aten.masked_select.default, aten._unique2.default,
                 aten.unique_dim.default, aten.unique_consecutive.default}
INDEX_OPS = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default}  # bool index: sync
FROM_HOST_DATA = {aten.lift_fresh.default}     # torch.tensor(data), as_tensor, from_numpy
LIBRARIES = (str(Path(torch.__file__).parent), str(Path(tensordict.__file__).parent))
TORCH_OPTIM = str(Path(torch.optim.__file__).parent)


class HostSyncs(TorchDispatchMode):
    """`with HostSyncs() as syncs: ...`; then `syncs.found` lists each sync as
    "op at file:line (source)", the line being the last one outside torch and tensordict.
    Non-capturable Adam's read of its step count (inside torch.optim) is left out: captured,
    Adam runs capturable, with its step on the device (rlcore.training.compile.make_capturable)."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        bool_index = func in INDEX_OPS and any(
            torch.is_tensor(i) and i.dtype == torch.bool for i in (args[1] or ()) if i is not None)
        if func in HOST_SYNC_OPS or func in FROM_HOST_DATA or bool_index:
            stack = traceback.extract_stack()[:-1]
            if not any(frame.filename.startswith(TORCH_OPTIM) for frame in stack):
                caller = [f for f in stack if not f.filename.startswith(LIBRARIES)] or stack
                where = caller[-1]
                self.found.append(f"{func} at {where.filename}:{where.lineno} ({where.line})")
        return func(*args, **(kwargs or {}))


def python_state(agent: torch.nn.Module) -> dict:
    """Every module's plain attributes (not its tensors, submodules or config) and the
    optimizers' hyperparameters: what a replayed CUDA graph cannot change."""
    state = {}
    for path, module in agent.named_modules():
        for key, value in vars(module).items():
            if key.startswith("_") or key in ("training", "cfg") or torch.is_tensor(value) \
                    or isinstance(value, (torch.nn.Module, torch.optim.Optimizer, DictConfig)):
                continue
            state[f"{path or 'agent'}.{key}"] = value
    for name, optimizer in agent.optimizers().items():
        state[name] = [{k: v for k, v in group.items() if k != "params"}
                       for group in optimizer.param_groups]
    return state

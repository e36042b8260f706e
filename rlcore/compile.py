"""`trainer.compile`: run an agent's update eagerly or through torch.compile.

O-DICE-style updates take several gradients with torch.autograd.grad inside one step;
Dynamo traces those only with `trace_autograd_ops` on (torch >= 2.13), which this sets
process-wide when compiling. Measured on this machine's CPU (2 cores): the whole O-DICE
update compiles in about 25 s and then runs 2.3x faster than eager (docs/benchmarks.md).

`auto` compiles on CUDA, and on CPU when the run is long enough (>= 20,000 updates) to repay
the compilation and a C++ compiler is there (inductor builds CPU kernels with it); short runs
and tests stay eager.

`cudagraphs` (CUDA only) compiles with mode="reduce-overhead": the whole update, optimizer
steps included, is replayed as one CUDA graph, with Adam made capturable (its step counter on
the device). It is opt-in until it has been checked on a GPU (tests/test_compile.py has the
check; it skips without CUDA).
"""
from __future__ import annotations

import shutil
from typing import Callable

import torch

from rlcore.errors import ConfigError

MODES = ("auto", "eager", "compile", "cudagraphs")
CPU_COMPILE_MIN_STEPS = 20_000


def resolve_mode(mode: str, device: torch.device, steps: int) -> str:
    if mode not in MODES:
        raise ConfigError(f"trainer.compile={mode!r}; valid: {', '.join(MODES)}")
    has_compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if mode == "auto":
        if device.type == "cuda":
            return "compile"
        return "compile" if steps >= CPU_COMPILE_MIN_STEPS and has_compiler else "eager"
    if mode == "cudagraphs" and device.type != "cuda":
        raise ConfigError(f"trainer.compile=cudagraphs needs a CUDA device (device={device}); "
                          "use trainer.compile=compile or eager")
    if mode == "compile" and device.type == "cpu" and not has_compiler:
        raise ConfigError("trainer.compile=compile on CPU needs a C++ compiler (g++ or clang++) "
                          "for torch.compile's kernels; install one or use trainer.compile=eager")
    return mode


def compiled_update(agent, mode: str) -> Callable:
    """The agent's update as the trainer should call it under `mode` (eager or compile)."""
    if mode == "eager":
        return agent.update
    torch._dynamo.config.trace_autograd_ops = True
    # Updates are split into a few graphs (at optimizer steps) and some specialise per phase or
    # per optimizer (TD3's delayed actor, Adam's first step): more variants than Dynamo's
    # default limit of 8 per code object, past which it would silently run them eagerly.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    if mode == "cudagraphs":
        for optimizer in agent.optimizers().values():
            for group in optimizer.param_groups:
                group["capturable"] = True
        return torch.compile(agent.update, mode="reduce-overhead")
    return torch.compile(agent.update)

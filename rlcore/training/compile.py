"""`trainer.compile`: how the trainer runs an agent's updates.

  eager       the agent's `update` as written;
  compile     through torch.compile (inductor fuses the many small elementwise and optimizer
              ops of an RL update);
  cudagraphs  (CUDA) the compiled update and its batch sampling, `trainer.updates_per_call`
              of them in a row, captured once as one CUDA graph and replayed: one launch per
              K updates, no Python, no per-kernel launch cost. An online agent's buffer grows
              every step, so its sampling stays outside: the graph holds the update alone, and
              each step's batch is copied into the graph's input before the replay.

O-DICE-style updates take several gradients with torch.autograd.grad inside one step;
Dynamo traces those only with `trace_autograd_ops` on (torch >= 2.13), which this sets when the
running torch has it. On an older torch the update compiles in pieces split at each
autograd.grad; the CUDA graph captures across those splits all the same (it records kernels,
not Python), so `cudagraphs` loses nothing there.

`auto` picks cudagraphs on CUDA (offline and online agents alike: on an H100 it ran online
SAC's training steps 3.6x faster than compile), and on CPU compile when the run is long enough
(>= 20,000 updates) to repay the compilation and a C++ compiler is there (inductor builds CPU
kernels with it).
"""
from __future__ import annotations

import logging
import math
import shutil
from typing import Callable

import torch
from tensordict import TensorDict

from rlcore.errors import ConfigError

MODES = ("auto", "eager", "compile", "cudagraphs")
CPU_COMPILE_MIN_STEPS = 20_000
CAPTURE_WARMUP_CALLS = 2       # eager calls on a side stream before capture (cuBLAS, Adam state)
AUTO_UPDATES_PER_CALL = (20, 16, 10, 8, 5, 4, 2, 1)
CAPTURED_ADAM = ("fused", "foreach")
DEFAULT_CAPTURED_ADAM = "foreach"   # measured faster inside a graph (docs/benchmarks.md)
MATMUL_PRECISIONS = ("highest", "high")

# Dynamo notes once per compiled process that it drops optimizer.step's profiler range: not news.
logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(
    lambda record: not str(record.msg).startswith("Profiler record function"))


def resolve_mode(mode: str, device: torch.device, steps: int) -> str:
    if mode not in MODES:
        raise ConfigError(f"trainer.compile={mode!r}; valid: {', '.join(MODES)}")
    has_compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if mode == "auto":
        if device.type == "cuda":
            return "cudagraphs"
        return "compile" if steps >= CPU_COMPILE_MIN_STEPS and has_compiler else "eager"
    if mode == "cudagraphs" and device.type != "cuda":
        raise ConfigError(f"trainer.compile=cudagraphs needs a CUDA device (device={device}); "
                          "use trainer.compile=compile or eager")
    if mode == "compile" and device.type == "cpu" and not has_compiler:
        raise ConfigError("trainer.compile=compile on CPU needs a C++ compiler (g++ or clang++) "
                          "for torch.compile's kernels; install one or use trainer.compile=eager")
    return mode


def resolve_updates_per_call(value, mode: str, cycle: int, intervals: list[int]) -> int:
    """K updates per call. `auto`: 1 unless captured, then the largest of AUTO_UPDATES_PER_CALL
    that is a multiple of the agent's update cycle and divides every interval (steps left, the
    start, logging, evaluation, checkpoints), so that those fall between calls."""
    if value in (None, "auto"):
        if mode != "cudagraphs":
            return 1
        fits = [k for k in AUTO_UPDATES_PER_CALL
                if k % cycle == 0 and all(n % k == 0 for n in intervals)]
        if not fits:
            raise ConfigError(f"trainer.compile=cudagraphs captures a whole number of update cycles "
                              f"({cycle} updates), but the steps left and the log/eval/checkpoint "
                              f"intervals {intervals} have no common multiple of {cycle} among "
                              f"{AUTO_UPDATES_PER_CALL}; make them multiples of {cycle}")
        return fits[0]
    k = int(value)
    if k < 1:
        raise ConfigError(f"trainer.updates_per_call={value!r}; valid: auto or an integer >= 1")
    if mode == "cudagraphs" and k % cycle:
        raise ConfigError(f"trainer.updates_per_call={k}: a captured call must hold whole update "
                          f"cycles of this agent ({cycle} updates: TD3-style delayed actor); use a "
                          f"multiple of {cycle}")
    bad = [n for n in intervals if n % k]
    if bad:
        raise ConfigError(f"trainer.updates_per_call={k} must divide the steps left and the log/eval/"
                          f"checkpoint intervals {intervals} ({bad} are not multiples of {k}); "
                          f"use a divisor of {math.gcd(*intervals)}")
    return k


def compiled_update(agent, mode: str) -> Callable:
    """The agent's `update(batch)` as eager or torch.compile'd code (cudagraphs compiles too)."""
    if mode == "eager":
        return agent.update
    if hasattr(torch._dynamo.config, "trace_autograd_ops"):
        torch._dynamo.config.trace_autograd_ops = True
    # Updates are split into a few graphs (at optimizer steps) and some specialise per phase or
    # per optimizer (TD3's delayed actor, Adam's first step): more variants than Dynamo's
    # default limit of 8 per code object, past which it would silently run them eagerly.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(agent.update)


def batch_update(agent, mode: str,
                 adam: str = DEFAULT_CAPTURED_ADAM) -> Callable[[TensorDict], dict]:
    """`update(batch)` for a batch sampled outside (an online agent's growing buffer); under
    cudagraphs the update alone is captured and each batch copied into the graph's input."""
    update = compiled_update(agent, mode)
    return CapturedUpdates(update, agent, adam=adam) if mode == "cudagraphs" else update


def update_step(agent, buffer, batch_size: int, mode: str,
                updates_per_call: int = 1, adam: str = DEFAULT_CAPTURED_ADAM) -> Callable[[], dict]:
    """A call that samples and takes `updates_per_call` updates and returns their metrics
    (each metric averaged over the updates that produced it)."""
    update = compiled_update(agent, mode)

    def run_updates() -> dict[str, torch.Tensor]:
        produced: dict[str, list[torch.Tensor]] = {}
        for _ in range(updates_per_call):
            for key, value in update(agent.sample(buffer, batch_size)).items():
                produced.setdefault(key, []).append(value)
        if updates_per_call == 1:
            return {key: values[0] for key, values in produced.items()}
        return {key: torch.stack(values).float().mean(0) for key, values in produced.items()}

    if mode == "cudagraphs":
        return CapturedUpdates(run_updates, agent, generator=buffer.generator, adam=adam)
    return run_updates


class CapturedUpdates:
    """`run_updates` recorded once as a CUDA graph, then replayed (PyTorch's whole-network
    capture): the first calls run eagerly on a side stream (cuBLAS workspaces, Adam's state,
    torch.compile's compilation), the next records the kernels, and every call replays them.
    Every call, the recording one included, takes the same updates an eager call would take.

    What a replay cannot see is fixed at capture: Python-side state must come back to where it
    was after one call (hence whole update cycles per call), a buffer sampled inside the graph
    must not grow, and the optimizers' tensors must not be replaced afterwards (a checkpoint
    loads before the first call). Adam runs `capturable` (its step count on the device), as
    multi-tensor kernels or one fused kernel (`adam`, see make_capturable). Random draws replay
    fresh: the default CUDA generator and `generator` (the buffer's, registered with the graph)
    advance their offsets per replay, as eager draws would. Tensor(Dict) inputs (an online
    agent's batch) are copied into the graph's own, contiguous, before each replay."""

    def __init__(self, run_updates: Callable[..., dict], agent, generator=None,
                 adam: str = DEFAULT_CAPTURED_ADAM):
        self.run_updates, self.agent, self.generator = run_updates, agent, generator
        self.adam = adam
        self.calls, self.graph, self.inputs, self.outputs = 0, None, (), None

    def __call__(self, *inputs) -> dict[str, torch.Tensor]:
        if self.graph is None and self.calls < CAPTURE_WARMUP_CALLS:
            self.calls += 1
            if self.calls == 1:
                make_capturable(self.agent, self.adam)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                metrics = self.run_updates(*map(dense_copy, inputs))
            torch.cuda.current_stream().wait_stream(side)
            return metrics
        if self.graph is None:
            self.capture(inputs)
        else:
            for static, value in zip(self.inputs, inputs):
                static.copy_(value)
        self.graph.replay()
        return {key: value.clone() for key, value in self.outputs.items()}

    def capture(self, inputs: tuple) -> None:
        graph = torch.cuda.CUDAGraph()
        if self.generator is not None:
            if not hasattr(graph, "register_generator_state"):
                raise ConfigError(f"trainer.compile=cudagraphs samples with the buffer's own "
                                  f"generator, which this torch ({torch.__version__}) cannot "
                                  "capture; use trainer.compile=compile, or a newer torch")
            graph.register_generator_state(self.generator)
        self.inputs = tuple(map(dense_copy, inputs))
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            self.outputs = self.run_updates(*self.inputs)
        self.graph = graph      # recording ran nothing: __call__'s replay takes this call's updates


def dense_copy(value):
    """A contiguous copy of a tensor or TensorDict. The warm-up calls and the capture see inputs
    laid out alike (a buffer's batch is strided views of its rows), so the compiled update
    is not recompiled, with new stride guards, while the stream is capturing."""
    dense = lambda t: t.clone(memory_format=torch.contiguous_format)  # noqa: E731
    return dense(value) if torch.is_tensor(value) else value.apply(dense)


def set_matmul_precision(precision: str) -> None:
    """float32 matrix products: `highest` computes them in float32 (PyTorch's default); `high`
    lets CUDA use TF32 tensor cores (10-bit mantissa inputs, float32 sums), as JAX does by
    default on these GPUs. Set before compiling: inductor picks its kernels by it."""
    if precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"trainer.matmul_precision={precision!r}; valid: "
                          f"{', '.join(MATMUL_PRECISIONS)}")
    torch.set_float32_matmul_precision(precision)


def check_captured_adam(adam: str) -> None:
    if adam not in CAPTURED_ADAM:
        raise ConfigError(f"trainer.captured_adam={adam!r}; valid: {', '.join(CAPTURED_ADAM)}")


def make_capturable(agent, adam: str = DEFAULT_CAPTURED_ADAM) -> None:
    """Adam with its step count on the device, so that a replayed step advances it (a state
    loaded from a checkpoint may hold it on the CPU); `fused`: one kernel per parameter group,
    `foreach`: torch's multi-tensor kernels. Same math; which is faster is measured (bench)."""
    check_captured_adam(adam)
    for optimizer in agent.optimizers().values():
        device = optimizer.param_groups[0]["params"][0].device
        for group in optimizer.param_groups:
            group.update(capturable=True, fused=adam == "fused", foreach=adam == "foreach")
        for state in optimizer.state.values():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(device, torch.float32)

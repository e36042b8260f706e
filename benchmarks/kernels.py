"""Kernels per update and their summed device time, for the compiled update (CUDA).

A captured CUDA graph replays its kernels back to back, so this sum bounds the captured rate:
    python benchmarks/kernels.py td3bc iql odice [--adam foreach] [--precision highest]
Synthetic data of Hopper's shape, the agent's default batch, one seed; 30 warm-up updates,
then 40 profiled ones. Prints each agent's kernels and time per update and its top kernels.
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from rlcore.agent import Spec
from rlcore.bench import synthetic_arrays
from rlcore.training.buffer import Buffer
from rlcore.training.compile import make_capturable, set_matmul_precision, update_step
from rlcore.config import load_config
from rlcore.data import from_arrays
from rlcore.training.trainer import build_agent

WARMUP, PROFILED = 30, 40


def profile_agent(name: str, adam: str, top: int) -> None:
    cfg = load_config([f"agent={name}", "device=cuda"])
    device = torch.device("cuda")
    buffer = Buffer.from_dataset(from_arrays("synthetic", synthetic_arrays(100_000, 11, 3)), device)
    agent = build_agent(cfg, Spec(11, 3), device, seeds=[0])
    make_capturable(agent, adam)                        # the optimizer the captured graph runs
    step = update_step(agent, buffer, cfg.agent.batch_size, "compile", 1)
    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(PROFILED):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    per_update = sum(e.device_time for e in kernels) / PROFILED
    print(f"{name} ({adam} Adam): {len(kernels) / PROFILED:.0f} kernels/update, "
          f"{per_update:.0f} us of kernels/update (back to back: {1e6 / per_update:.0f} updates/s)")
    by_name: dict[str, list[float]] = {}
    for e in kernels:
        count_time = by_name.setdefault(e.name[:80], [0, 0.0])
        count_time[0] += 1
        count_time[1] += e.device_time
    for kernel, (count, time) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {count / PROFILED:5.1f}x {time / PROFILED:7.1f} us  {kernel}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agents", nargs="+")
    parser.add_argument("--adam", default="foreach", choices=["foreach", "fused"])
    parser.add_argument("--precision", default="highest", choices=["highest", "high"])
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/kernels.py profiles CUDA kernels: it needs a CUDA GPU")
    set_matmul_precision(args.precision)
    for name in args.agents:
        profile_agent(name, args.adam, args.top)


if __name__ == "__main__":
    main()

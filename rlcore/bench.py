"""`rlcore bench`: updates/s of an agent's update, rlcore's loops beside a reference loop.

Every loop runs the same agent math on the same device in the same process:
  reference         the straightforward way (as CORL writes it): indices and batch gathered on
                    the CPU with numpy, copied to the device each step, every metric .item()'d;
  rlcore eager      indices drawn on the device, metrics kept on the device (one sync at the end);
  rlcore compiled   the same with the update through torch.compile (trainer.compile=compile);
                    compilation happens in the warm-up and is reported separately;
  rlcore cudagraphs (CUDA) the compiled update and its sampling, `bench.updates_per_call` in a
                    row, replayed as one CUDA graph (trainer.compile=cudagraphs);
  K seeds           `bench.seeds` independent seeds in one agent (seeds=K), in the last of
                    `bench.modes`; updates/s counts seed-updates (K per call), so its ratio is
                    the aggregate throughput against the one-seed reference.
`bench.agents=all` benches every registered offline agent, one after another.
Synthetic data with the env's observation and action sizes; the numbers are throughput only.

`bench.sustained=N` (N >= 2000) adds a drift check on the env's real dataset: N updates in
the first of `bench.modes`, after a parallel op has started torch's worker threads (as making
a dataset does), and the rate over the last 1,000 updates beside the first 1,000. A ratio
well below 1 means the update slows as it trains; subnormal floats were such a cause
(rlcore.training.denormals), and only real data with weighted-BC agents shows them.
"""
from __future__ import annotations

import json
import platform
import time

import gymnasium as gym
import numpy as np
import torch

from rlcore.agent import Spec
from rlcore.training.buffer import KEYS, Buffer
from rlcore.training.compile import resolve_mode, set_matmul_precision, update_step
from rlcore.config import load_config, resolve_device
from rlcore.data import from_arrays
from rlcore.errors import ConfigError
from rlcore.fileio import atomic_write_text
from rlcore.data.preferences import Labelling, PreferenceSampler, make_preferences, preference_label
from rlcore.registry import AGENTS, DATASETS
from rlcore.training.trainer import build_agent, gym_kwargs, prepare


LABELS = {"compile": "compiled (torch.compile)", "cudagraphs": "CUDA graph, {k} compiled updates"}


def synthetic_arrays(n: int, obs_dim: int, action_dim: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"observations": rng.standard_normal((n, obs_dim), dtype=np.float32),
            "actions": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
            "rewards": rng.standard_normal(n, dtype=np.float32),
            "next_observations": rng.standard_normal((n, obs_dim), dtype=np.float32),
            "terminals": (rng.random(n) < 0.001).astype(np.float32),
            "timeouts": (np.arange(n) % 1000 == 999).astype(np.float32)}


def bench_modes(modes, device: torch.device) -> list[str]:
    """`auto`: eager and compile, and cudagraphs on CUDA; a list is checked like trainer.compile."""
    if modes in (None, "auto"):
        return ["eager", "compile", "cudagraphs"] if device.type == "cuda" else ["eager", "compile"]
    return [resolve_mode(m, device, steps=10**9) for m in modes]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rlcore(step, per_call, updates, warmup, device) -> tuple[float, float]:
    """(updates/s, seconds of warm-up including any compilation or capture)."""
    start = time.perf_counter()
    for _ in range(max(1, warmup // per_call)):
        step()
    _sync(device)
    warm = time.perf_counter() - start
    calls = max(1, updates // per_call)
    start = time.perf_counter()
    metrics = {}
    for _ in range(calls):
        metrics = step()
    torch.stack([v.float() for v in metrics.values()]).cpu()
    _sync(device)
    return calls * per_call / (time.perf_counter() - start), warm


def numpy_batches(agent, arrays, batch_size):
    """A plain loop's batches: indices drawn with numpy, the rows copied from host arrays."""
    from tensordict import TensorDict
    rng = np.random.default_rng(0)
    n = len(arrays["rewards"])

    def draw():
        idx = rng.integers(0, n, batch_size)
        batch = TensorDict({k: torch.tensor(arrays[k][idx]) for k in KEYS}, batch_size=[batch_size])
        return batch.unsqueeze(0) if agent.multi_seed else batch   # the contract's [1, B]
    return draw


def numpy_pair_batches(agent, arrays, prefs, batch_size):
    """A plain loop's segment pairs (CPL's FeedbackBuffer, rank mode): both segments drawn with
    numpy, their steps copied from host arrays, the label from the two scores."""
    from tensordict import TensorDict
    rng = np.random.default_rng(0)
    offsets = np.arange(prefs.length)

    def draw():
        pair = rng.integers(0, len(prefs.starts), (batch_size, 2))
        steps = prefs.starts[pair][..., None] + offsets                  # [B, 2, L]
        batch = {k: torch.tensor(arrays[k][steps]) for k in KEYS}
        batch["labels"] = torch.tensor(preference_label(prefs.scores[pair[:, 0]],
                                                        prefs.scores[pair[:, 1]]), dtype=torch.float32)
        return TensorDict(batch, batch_size=[batch_size]).unsqueeze(0)  # the contract's [1, B]
    return draw


def time_reference(agent, draw, updates, warmup, device) -> float:
    """A plain loop: a batch made on the host and copied over, one update, every metric read
    back with .item()."""
    def step() -> None:
        batch = draw().to(device)
        for value in agent.update(batch).values():
            value.item()

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(updates):
        step()
    _sync(device)
    return updates / (time.perf_counter() - start)


def run_bench(overrides: list[str]) -> list[dict]:
    """Bench the config's agent, or each registered offline agent with bench.agents=all."""
    cfg = load_config(overrides)
    names = cfg.bench.get("agents") or [cfg.agent.name]
    if names == "all":  # the offline (multi-seed) agents
        names = [n for n in AGENTS.names() if AGENTS.get(n).multi_seed]
    results = []
    for name in names:
        if AGENTS.get(name).on_policy:
            raise ConfigError(f"agent={name} is on-policy: it has no batch update to time. Its "
                              "seconds per iteration are in every run's metrics (iteration_s, "
                              "sample_s) and side by side in benchmarks/policy_gradients.py")
        if AGENTS.get(name).simulates:
            raise ConfigError(f"agent={name} learns from a simulator, not from batches of "
                              "transitions; its steps per second are in every run's metrics "
                              "(updates_per_s) and training seconds in benchmarks/inventory.py")
        agent_cfg = load_config([*overrides, f"agent={name}"]) if name != cfg.agent.name else cfg
        results.append(bench_agent(agent_cfg))
        if int(cfg.bench.sustained):
            results[-1]["sustained"] = bench_sustained(agent_cfg)
    atomic_write_text(cfg.bench.out, json.dumps(results if len(results) > 1 else results[0], indent=2))
    print(f"saved {cfg.bench.out}")
    return results


def bench_agent(cfg) -> dict:
    device = resolve_device(cfg.device)
    b = cfg.bench
    set_matmul_precision(cfg.trainer.matmul_precision)
    if cfg.env.get("goal_tasks"):                    # OGBench's envs register on import
        from rlcore.envs.ogbench import import_ogbench
        import_ogbench()
    DATASETS.names()                                 # rlcore's own envs register on import
    env = gym.make(cfg.env.gym_id, **gym_kwargs(cfg))
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    arrays = synthetic_arrays(b.transitions, obs_dim, action_dim)
    goal_conditioned = getattr(AGENTS.get(cfg.agent.name), "goal_conditioned", False)
    spec = Spec(obs_dim, action_dim, obs_dim if goal_conditioned else 0)   # goals are states
    expert = np.arange(b.transitions * 9 // 10, b.transitions)       # for imitation agents
    buffer = Buffer.from_dataset(from_arrays("synthetic", arrays), device, subsets={"expert": expert})
    prefs = None
    if getattr(AGENTS.get(cfg.agent.name), "learns_from_preferences", False):   # scored by return
        prefs = make_preferences(from_arrays("synthetic", arrays), Labelling(
            labeller="return", segment_length=int(cfg.env.get("segment_length") or 64)), progress=False)
        buffer.preferences = PreferenceSampler(buffer, prefs)
    loops = [("reference (goals relabelled on the host, .item())" if goal_conditioned else
              "reference (numpy sampling, .item() per step)", None, 1)]
    modes = bench_modes(b.modes, device)
    loops += [(f"rlcore {LABELS.get(m, m).format(k=b.updates_per_call)}", m, 1) for m in modes]
    k = int(b.get("seeds") or 1)
    if k > 1 and AGENTS.get(cfg.agent.name).multi_seed:
        loops.append((f"rlcore {modes[-1]}, {k} seeds (seed-updates/s)", modes[-1], k))
    rows = []
    for label, mode, seeds in loops:
        agent = build_agent(cfg, spec, device, seeds=list(range(seeds)))
        if mode is None and goal_conditioned:       # goals relabelled on the host, as OGBench
            host = Buffer.from_dataset(from_arrays("synthetic", arrays))
            ups, warm = time_reference(agent, lambda: agent.sample(host, cfg.agent.batch_size),
                                       b.updates, b.warmup, device), None
        elif mode is None and prefs is not None:    # pairs indexed on the host, as FeedbackBuffer
            ups, warm = time_reference(agent, numpy_pair_batches(agent, arrays, prefs, cfg.agent.batch_size),
                                       b.updates, b.warmup, device), None
        elif mode is None:
            rows_per_update = agent.sample(buffer, cfg.agent.batch_size).shape[-1]  # recoil: 2B
            ups, warm = time_reference(agent, numpy_batches(agent, arrays, rows_per_update),
                                       b.updates, b.warmup, device), None
        else:
            per_call = int(b.updates_per_call) if mode == "cudagraphs" else 1
            step = update_step(agent, buffer, cfg.agent.batch_size, mode, per_call,
                               cfg.trainer.captured_adam)
            ups, warm = time_rlcore(step, per_call, b.updates, b.warmup, device)
        rows.append({"loop": label, "seeds": seeds, "updates_per_s": ups * seeds, "warmup_s": warm})
    base = rows[0]["updates_per_s"]
    for row in rows:
        row["ratio"] = row["updates_per_s"] / base
    result = {"agent": cfg.agent.name, "env": cfg.env.name, "batch_size": cfg.agent.batch_size,
              "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "updates": b.updates, "captured_adam": cfg.trainer.captured_adam,
              "matmul_precision": cfg.trainer.matmul_precision, "rows": rows}
    print(f"{cfg.agent.name} on {device} (torch {torch.__version__}), batch {cfg.agent.batch_size}, "
          f"{b.updates} timed updates after {b.warmup} warm-up, float32 matmuls "
          f"{cfg.trainer.matmul_precision}" + (f", {cfg.trainer.captured_adam} Adam in the graph"
                                               if "cudagraphs" in modes else ""))
    print(f"{'loop':<52} {'updates/s':>10} {'ratio':>7} {'warm-up s':>10}")
    for row in rows:
        warm = "" if row["warmup_s"] is None else f"{row['warmup_s']:.1f}"
        print(f"{row['loop']:<52} {row['updates_per_s']:>10.1f} {row['ratio']:>7.2f} {warm:>10}")
    return result


def bench_sustained(cfg, window: int = 1000) -> dict:
    """Updates/s over the first and the last `window` of `bench.sustained` updates on the
    env's real dataset, in one process whose worker threads ran before the agent was built."""
    total = int(cfg.bench.sustained)                 # >= 2000 (rlcore.schema)
    torch.ones(1 << 20).mul_(0.5).sum()           # start the intra-op worker threads first
    setup = prepare(cfg, progress=False)
    mode = bench_modes(cfg.bench.modes, setup.device)[0]
    step = update_step(setup.agent, setup.buffer, cfg.agent.batch_size, mode)
    rates, done = {}, 0
    for name, start in (("first", 0), ("last", total - window)):
        for _ in range(start - done):
            step()
        _sync(setup.device)
        began = time.perf_counter()
        for _ in range(window):
            metrics = step()
        torch.stack([v.float().mean() for v in metrics.values()]).cpu()
        _sync(setup.device)
        rates[name] = window / (time.perf_counter() - began)
        done = start + window
    result = {"dataset": str(cfg.env.dataset), "mode": mode, "updates": total,
              "first_updates_per_s": rates["first"], "last_updates_per_s": rates["last"],
              "last_over_first": rates["last"] / rates["first"]}
    print(f"sustained, {mode}, {cfg.env.dataset}: {rates['first']:.1f} updates/s over updates "
          f"1-{window}, {rates['last']:.1f} over {total - window + 1}-{total} "
          f"(ratio {result['last_over_first']:.2f})")
    return result

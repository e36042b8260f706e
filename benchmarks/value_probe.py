"""What a trained run's critic believes, measured against its own data.

For each seed of a run folder (its newest checkpoint), on dataset states:
- V(s) against the data's discounted Monte-Carlo return-to-go G_t, on the agent's reward scale
  (bias and correlation): is the value level where the data's returns put it?
- min_k Qbar_k(s, a) (the target critic) for the data's action, a uniform random action and the
  policy's deterministic action: does the critic still tell the data's actions from random ones?

    python benchmarks/value_probe.py runs/fdvl/halfcheetah-medium/<run> [more runs] --out probe.json

States whose episode was cut by a time limit are used only `--tail` steps or more before the cut,
so the missing tail weighs at most discount^tail. Agents with a `value` network and/or a
twin critic read through `q(critic, s, a)` (IQL, f-DVL, A2PR, TD3+BC, O-DICE's V) are probed.

`--near-terminal` adds, for every state of an episode that ends in a terminal (a fall), mean V(s)
and G by the steps left before that terminal: does V fall toward a failure as the data's returns
do, or does the value stay level up to the end?
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rlcore.training.checkpoint import load_checkpoint
from rlcore.errors import UserError
from rlcore.evaluation.run import run_config_and_checkpoint
from rlcore.fileio import atomic_write_text
from rlcore.training.seeds import resolve_seeds
from rlcore.training.trainer import prepare


def probe_states(dataset, tail: int, count: int, seed: int) -> np.ndarray:
    """Row indices: in episodes ended by a terminal, any step; in episodes cut by a time limit,
    `tail` steps or more before the cut (where a return-to-go is not truncated much)."""
    ends = dataset.episode_ends()
    starts = dataset.episode_starts()
    usable = np.zeros(len(dataset), bool)
    for start, end in zip(starts, ends):
        usable[start:end if dataset.terminals[end - 1] else max(start, end - tail)] = True
    rows = np.flatnonzero(usable)
    if len(rows) == 0:
        raise UserError(f"no state of {dataset.name!r} lies {tail} steps before a time limit; "
                        "lower --tail")
    return np.random.default_rng(seed).choice(rows, min(count, len(rows)), replace=False)


VALUE_CHUNK = 16384        # states per forward pass: a 1M-transition dataset's bins fit in memory
NEAR_TERMINAL = ((0, 0), (1, 4), (5, 19), (20, 49), (50, 99), (100, 199))  # steps left, inclusive


def steps_to_terminal(dataset) -> np.ndarray:
    """Per row: steps left before its episode's terminal transition (0 on that transition);
    -1 in episodes not ended by a terminal (a time limit, or unfinished)."""
    left = np.full(len(dataset), -1, dtype=np.int64)
    for start, end in zip(dataset.episode_starts(), dataset.episode_ends()):
        if dataset.terminals[end - 1]:
            left[start:end] = np.arange(end - start)[::-1]
    return left


def corr(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1])


@torch.no_grad()
def probe_run(run_dir: Path, count: int = 20000, tail: int = 500, seed: int = 0,
              near_terminal: bool = False) -> list[dict]:
    """One dict per seed of the run's newest checkpoint (with `near_terminal`, its
    "near_terminal" entry: V and G by steps left before a terminal, NEAR_TERMINAL's bins)."""
    cfg, checkpoint = run_config_and_checkpoint(run_dir)
    setup = prepare(cfg, torch.device("cpu"), progress=False)
    agent = setup.agent
    state = load_checkpoint(checkpoint)
    agent.load_state_dict(state["agent"])
    has_value, has_critic = hasattr(agent, "value"), hasattr(agent, "target_critic")
    if not (has_value or has_critic):
        raise UserError(f"{run_dir}: agent {cfg.agent.name!r} has neither a value network nor a critic to probe")

    # The buffer holds what the agent trained on: preprocessed rewards, normalised observations.
    data = setup.buffer.contents()
    dataset = replace(setup.dataset, rewards=data["rewards"].numpy())
    returns = dataset.returns_to_go(float(cfg.agent.discount))
    rows = probe_states(dataset, tail, count, seed)
    S = agent.spec.seeds
    observations = data["observations"][rows]
    s = observations.expand(S, -1, -1)
    a = data["actions"][rows].clamp(-1, 1).expand(S, -1, -1)
    g = torch.as_tensor(returns[rows], dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(a.shape, generator=generator) * 2 - 1

    def value(states):              # [S, B]; twin V heads ([S, heads, B]) give their mean
        chunks = []
        for chunk in states.split(VALUE_CHUNK):
            v = agent.value(chunk.expand(S, -1, -1))
            chunks.append(v.mean(1) if v.dim() == 3 else v)
        return torch.cat(chunks, -1)

    v = value(observations) if has_value else None
    bins = []
    if near_terminal and has_value:
        left = steps_to_terminal(dataset)
        for low, high in NEAR_TERMINAL:
            at = np.flatnonzero((left >= low) & (left <= high))
            if len(at):
                bins.append((f"{low}" if low == high else f"{low}-{high}", len(at),
                             float(returns[at].mean()), value(data["observations"][at]).mean(-1)))
    q = {}
    if has_critic:
        for name, actions in (("data", a), ("uniform", uniform),
                              ("policy", agent.policy_action(s, True))):
            q[name] = agent.q(agent.target_critic, s, actions).min(1).values
    out = []
    for k, seed_value in enumerate(resolve_seeds(cfg)):
        row = {"run": str(run_dir), "agent": cfg.agent.name, "step": int(state["step"]),
               "seed": seed_value, "states": len(rows), "return_to_go": float(g.mean())}
        if v is not None:
            row.update(v=float(v[k].mean()), v_bias=float((v[k] - g).mean()), v_corr=corr(v[k], g))
        if bins:
            row["near_terminal"] = [{"steps_left": name, "states": n, "return_to_go": g_mean,
                                     "v": float(v_mean[k])} for name, n, g_mean, v_mean in bins]
        if q:
            row.update(q_data_corr=corr(q["data"][k], g),
                       q_uniform_minus_data=float((q["uniform"][k] - q["data"][k]).mean()),
                       p_uniform_above_data=float((q["uniform"][k] > q["data"][k]).float().mean()),
                       q_policy_minus_data=float((q["policy"][k] - q["data"][k]).mean()))
            if v is not None:
                row.update(q_data_minus_v=float((q["data"][k] - v[k]).mean()),
                           p_q_data_above_v=float((q["data"][k] > v[k]).float().mean()))
        out.append(row)
    return out


COLUMNS = ("agent", "step", "seed", "return_to_go", "v", "v_bias", "v_corr", "q_data_minus_v",
           "p_q_data_above_v", "q_uniform_minus_data", "p_uniform_above_data", "q_policy_minus_data")


def markdown(rows: list[dict]) -> str:
    def cell(value):
        return "" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    near = [r for r in rows if r.get("near_terminal")]
    if near:
        names = [b["steps_left"] for b in near[0]["near_terminal"]]
        lines += ["", "Mean V(s) (and the data's G) by steps left before a terminal:", "",
                  "| agent | step | seed | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(names))]
        lines += [f"| {r['agent']} | {r['step']} | {r['seed']} | " + " | ".join(
            f"{b['v']:.3g} ({b['return_to_go']:.3g})" for b in r["near_terminal"]) + " |" for r in near]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with config.yaml)")
    parser.add_argument("--states", type=int, default=20000, help="dataset states per run")
    parser.add_argument("--tail", type=int, default=500,
                        help="skip this many steps before a time-limit cut")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--near-terminal", action="store_true",
                        help="also V and G by steps left before a terminal")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    try:
        rows = [row for run in args.runs for row in probe_run(run, args.states, args.tail, args.seed,
                                                   args.near_terminal)]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(rows))
    if args.out:
        atomic_write_text(args.out, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

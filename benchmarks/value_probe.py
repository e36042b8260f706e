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
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rlcore.checkpoint import load_checkpoint
from rlcore.errors import UserError
from rlcore.evaluate_run import run_config_and_checkpoint
from rlcore.fileio import atomic_write_text
from rlcore.seeds import resolve_seeds
from rlcore.trainer import prepare


def probe_states(dataset, discount: float, tail: int, count: int, seed: int):
    """Row indices (episodes ended by a terminal: any step; cut by a time limit: `tail` steps or
    more before the cut) and their returns-to-go."""
    ends = dataset.episode_ends()
    starts = dataset.episode_starts()
    usable = np.zeros(len(dataset), bool)
    for start, end in zip(starts, ends):
        usable[start:end if dataset.terminals[end - 1] else max(start, end - tail)] = True
    rows = np.flatnonzero(usable)
    if len(rows) == 0:
        raise UserError(f"no state of {dataset.name!r} lies {tail} steps before a time limit; "
                        "lower --tail")
    rows = np.random.default_rng(seed).choice(rows, min(count, len(rows)), replace=False)
    return rows, dataset.returns_to_go(discount)[rows]


def corr(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1])


@torch.no_grad()
def probe_run(run_dir: Path, count: int = 20000, tail: int = 500, seed: int = 0) -> list[dict]:
    """One dict per seed of the run's newest checkpoint."""
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
    discount = float(cfg.agent.discount)
    rows, returns = probe_states(dataset, discount, tail, count, seed)
    S = agent.spec.seeds
    s = data["observations"][rows].expand(S, -1, -1)
    a = data["actions"][rows].clamp(-1, 1).expand(S, -1, -1)
    g = torch.as_tensor(returns, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(a.shape, generator=generator) * 2 - 1

    v = agent.value(s) if has_value else None
    if v is not None and v.dim() == 3:                  # twin V heads ([S, heads, B]): their mean
        v = v.mean(1)
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
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with config.yaml)")
    parser.add_argument("--states", type=int, default=20000, help="dataset states per run")
    parser.add_argument("--tail", type=int, default=500,
                        help="skip this many steps before a time-limit cut")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    try:
        rows = [row for run in args.runs for row in probe_run(run, args.states, args.tail, args.seed)]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(rows))
    if args.out:
        atomic_write_text(args.out, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

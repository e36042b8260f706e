"""How far a goal-conditioned value function has learned to see: V(s, g) of a pointmaze run
against the maze's true distance from s to g (breadth-first, in cells).

With r = -1 per step until g, V(s, g) should fall with the distance; before TD has carried
the goal's value that far, V is flat beyond some distance. The probe draws dataset states as
s and g, groups the pairs by distance, and prints the mean V per group and the rank
correlation of V with -distance (Spearman) below and above a cut. Works on runs of agents with
a `value(s, g)` (GCIVL, HIQL) or value_net (GCIQL); the checkpoint's seeds are probed apart.

    python benchmarks/goal_value_probe.py runs/goals/gcivl/pointmaze-medium-stitch/seeds3-steps20000-97dd8ab0
"""
from __future__ import annotations

import argparse
import sys
from collections import deque
from pathlib import Path

import numpy as np
import torch


def cell_distances(maze_map: np.ndarray) -> dict:
    """All-pairs BFS distances between free cells."""
    free = [(i, j) for i in range(maze_map.shape[0]) for j in range(maze_map.shape[1])
            if maze_map[i, j] == 0]
    out = {}
    for start in free:
        dist, queue = {start: 0}, deque([start])
        while queue:
            i, j = queue.popleft()
            for n in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
                if maze_map[n] == 0 and n not in dist:
                    dist[n] = dist[(i, j)] + 1
                    queue.append(n)
        for end, d in dist.items():
            out[start, end] = d
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--pairs", type=int, default=20000)
    p.add_argument("--cut", type=int, default=4, help="distance (cells) splitting near from far")
    args = p.parse_args(argv)

    from rlcore.agent import Spec
    from rlcore.training.checkpoint import load_checkpoint
    from rlcore.data.datasets import load_dataset
    from rlcore.envs.ogbench import make_env
    from rlcore.evaluation.run import run_config_and_checkpoint
    from rlcore.training.trainer import build_agent
    cfg, path = run_config_and_checkpoint(args.run_dir)
    state = load_checkpoint(path, torch.device("cpu"))
    agent = build_agent(cfg, Spec(**state["spec"]), torch.device("cpu"))
    agent.load_state_dict(state["agent"])
    maze = make_env(cfg.env.gym_id).unwrapped
    data = load_dataset(str(cfg.env.dataset), cfg.data.transitions, cfg.data.seed, progress=False)
    rng = np.random.default_rng(0)
    s = data.observations[rng.integers(len(data), size=args.pairs)]
    g = data.observations[rng.integers(len(data), size=args.pairs)]
    table = cell_distances(maze.maze_map)
    dist = np.array([table[tuple(maze.xy_to_ij(a)), tuple(maze.xy_to_ij(b))] for a, b in zip(s, g)])
    S = agent.spec.seeds
    st, gt = (torch.as_tensor(x).expand(S, *x.shape) for x in (s, g))
    with torch.no_grad():
        if hasattr(agent, "value"):
            v = agent.value(st, gt)
        else:
            v = agent.value_net(torch.cat([st, gt], -1))
        v = (v.mean(1) if v.dim() == 3 else v).numpy()                   # [S, pairs]
    print(f"{cfg.agent.name} on {cfg.env.dataset}, step {state['step']}: V(s, g) by BFS distance "
          f"(cells), {args.pairs} dataset pairs")
    groups = sorted(set(dist.tolist()))
    print("distance " + " ".join(f"{d:>6}" for d in groups))
    print("pairs    " + " ".join(f"{(dist == d).sum():>6}" for d in groups))
    for k in range(S):
        print(f"seed {k}   " + " ".join(f"{v[k][dist == d].mean():>6.1f}" for d in groups))
        near, far = dist <= args.cut, dist > args.cut
        print(f"         Spearman(V, -distance): {spearman(v[k][near], -dist[near]):.2f} at <= "
              f"{args.cut} cells, {spearman(v[k][far], -dist[far]):.2f} beyond")
    return 0


if __name__ == "__main__":
    sys.exit(main())

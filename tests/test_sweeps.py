"""`rlcore report`: aggregate metrics by hand, a grid trained and resumed, and the same grid on
Ray (a head and a worker started on loopback) and through submitit's local executor giving the
local launcher's results. The grid is the inventory simulator's at toy sizes (no dataset to make)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlcore.errors import ConfigError, UserError
from rlcore.evaluation.aggregate import (iqm, performance_profile, probability_of_improvement,
                                         stratified_bootstrap)
from rlcore.report import ReportRequest, plan, run_report

GRID = ["agents=[hdpo,reinforce]", "datasets=[inventory-one-store-lost,inventory-one-store-backlogged]",
        "seeds=2", "trainer.steps=8", "agent.policy=capped_base_stock", "trainer.eval_every=4",
        "env.scenarios.train.samples=64", "env.scenarios.train.batch_size=32",
        "env.scenarios.dev.samples=64", "env.scenarios.dev.periods=30", "env.scenarios.dev.ignore=10",
        "env.scenarios.test.samples=64", "env.scenarios.test.periods=40", "env.scenarios.test.ignore=10"]


# Two cells, one per Ray node: the launcher checks need no more.
SMALL = ["agents=[hdpo]", "datasets=[inventory-one-store-lost]", *GRID[2:]]


def scores(page: Path) -> dict:
    records = json.loads(page.with_name(page.name + ".json").read_text())["records"]
    return {(r["agent"], r["dataset"], r["seed"]): (r["last"], r["best"], r["test_cost"]) for r in records}


def test_aggregates_by_hand():
    x = np.array([[0.0, 10.0], [20.0, 30.0], [40.0, 50.0], [60.0, 70.0]])    # [runs, tasks]
    assert iqm(x) == pytest.approx(np.mean([20, 30, 40, 50]))               # middle 4 of 8
    low, high = stratified_bootstrap(x, iqm, reps=500)
    assert low <= iqm(x) <= high
    assert performance_profile(x, np.array([-1.0, 35.0, 70.0])).tolist() == [1.0, 0.5, 0.0]
    y = x + 100
    assert probability_of_improvement(y, x) == 1.0 and probability_of_improvement(x, y) == 0.0
    assert probability_of_improvement(x, x) == pytest.approx(0.5)


def test_a_report_trains_its_grid_and_a_killed_one_trains_only_what_is_missing(tmp_path):
    page = run_report(GRID, tmp_path / "page", tmp_path / "runs")
    assert "inventory-one-store-lost-p9-L4" in page and "| hdpo | 2 |" in page
    for ext in (".md", ".json", "-curves.png"):
        assert (tmp_path / f"page{ext}").exists()
    first = scores(tmp_path / "page")
    cells = plan(ReportRequest.parse(GRID), tmp_path / "runs")
    assert len(cells) == 8 and all(c.finished for c in cells)     # single-seed agents: a cell per seed
    killed = cells[3]
    shutil.rmtree(killed.run_dir)                                 # never finished
    mid = cells[5]
    (Path(mid.run_dir) / "summary.json").unlink()                 # killed after its last checkpoint
    kept = {c.run_dir: (Path(c.run_dir) / "summary.json").stat().st_mtime_ns
            for c in cells if c not in (killed, mid)}
    run_report(GRID, tmp_path / "page", tmp_path / "runs")
    assert {d: (Path(d) / "summary.json").stat().st_mtime_ns for d in kept} == kept
    assert scores(tmp_path / "page") == first
    run_report([], tmp_path / "from", tmp_path / "unused", tmp_path / "runs")   # --from runs/
    assert scores(tmp_path / "from") == first


def test_bad_report_requests_get_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs datasets"):
        ReportRequest.parse(["agents=[iql]"])
    with pytest.raises(ConfigError, match="set per cell"):
        ReportRequest.parse(["agents=[iql]", "datasets=[hopper-medium]", "seed=3"])
    with pytest.raises(ConfigError, match="fits no env"):
        plan(ReportRequest.parse(["agents=[iql]", "datasets=[pong-medium]"]), tmp_path)
    with pytest.raises(ConfigError, match="launcher='kubernetes'"):
        run_report([*GRID, "launcher=kubernetes"], tmp_path / "p", tmp_path / "r")
    with pytest.raises(UserError, match="no finished run folders"):
        run_report([], tmp_path / "p", tmp_path / "r", tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None, reason="needs submitit (.[slurm])")
def test_submitit_local_executor_gives_the_local_launcher_s_results(tmp_path):
    local = scores_of(tmp_path / "local", [])
    slurm = scores_of(tmp_path / "slurm", ["launcher=slurm", "launcher.cluster=local"])
    assert slurm == local


def scores_of(where: Path, launcher: list[str]) -> dict:
    run_report([*SMALL, *launcher], where / "page", where / "runs")
    return scores(where / "page")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path):
    """A Ray head and one worker node, each with one CPU, on this machine's loopback."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs ray (.[ray])")
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false", *common], check=True, env=env, capture_output=True)
    try:
        subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
                        *common], check=True, env=env, capture_output=True)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)


def test_ray_cluster_gives_the_local_launcher_s_results(tmp_path, ray_cluster):
    import ray
    ray.init(address=ray_cluster, log_to_driver=False)
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2       # head + worker
    finally:
        ray.shutdown()
    local = scores_of(tmp_path / "local", [])
    on_ray = scores_of(tmp_path / "ray", ["launcher=ray", f"launcher.address={ray_cluster}"])
    assert on_ray == local

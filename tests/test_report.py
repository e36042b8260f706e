"""benchmarks/report.py (the results table, resuming a report killed mid-cell),
benchmarks/curves.py (learning curves from its run folders) and benchmarks/value_probe.py."""
import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from rlcore.errors import UserError
from tests.conftest import episodes_dataset

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report, curves, value_probe = (load_script(name) for name in ("report", "curves", "value_probe"))

TINY = ["agent.hidden=[32,32]", "agent.batch_size=32", "data.transitions=3000",
        "trainer.eval_every=4", "trainer.eval_episodes=2", "trainer.progress=false",
        "trainer.compile=eager"]


def run_report(tmp_path, out, *extra, agent="bc"):
    argv = ["--steps", "8", "--seeds", "2", "--agents", agent, "--datasets", "hopper-pd-noisy",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / out),
            "--override", *TINY, *extra]
    assert report.main(argv) == 0
    assert (tmp_path / f"{out}.md").exists() and (tmp_path / f"{out}.png").exists()
    return json.loads((tmp_path / f"{out}.json").read_text())


def test_a_report_killed_mid_cell_resumes_it_and_ends_as_an_uninterrupted_one(tmp_path):
    first = run_report(tmp_path, "first")
    cell = first["bc@hopper-pd-noisy"]
    assert [c["seed"] for c in cell] == [0, 1] and all(c["steps"] == 8 for c in cell)
    for c in cell:   # relative to --runs: the JSON names no folder of this machine
        assert not Path(c["run_dir"]).is_absolute()
        assert (tmp_path / "runs" / c["run_dir"] / "metrics.jsonl").exists()
    cell_dir = (tmp_path / "runs" / cell[0]["run_dir"]).parent
    checkpoints = sorted((cell_dir / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in checkpoints] == ["step_000000004.pt", "step_000000008.pt"]

    checkpoints[-1].unlink()            # killed after its step-4 checkpoint, before the table
    step4_written = checkpoints[0].stat().st_mtime_ns
    resumed = run_report(tmp_path, "second")
    assert checkpoints[0].stat().st_mtime_ns == step4_written   # resumed there, not retrained
    assert [(c["last"], c["best"]) for c in resumed["bc@hopper-pd-noisy"]] == \
        [(c["last"], c["best"]) for c in cell]
    assert (cell_dir / "checkpoints" / "step_000000008.pt").exists()

    # a dotted --out keeps its whole name (with_suffix would write other-lr-1.json)
    other = run_report(tmp_path, "other-lr-1.0e-3", "agent.lr=1e-3")["bc@hopper-pd-noisy"]
    assert Path(other[0]["run_dir"]).parent != Path(cell[0]["run_dir"]).parent  # not resumed


def test_a_table_reports_last_and_best_and_holds_one_run_length():
    seed = {"run_dir": "x", "data_score": 27.0}
    results = {"bc@hopper-medium": [{**seed, "seed": 0, "steps": 8, "last": 1.0, "best": 3.0},
                                    {**seed, "seed": 1, "steps": 8, "last": 3.0, "best": 7.0}],
               "iql@hopper-medium": [{**seed, "seed": 0, "last": 5.0, "best": 5.0}]}  # no "steps"
    last, best = report.write_table(results, Namespace(seeds=2, steps=8)).split("Best evaluation")
    assert "| dataset | *data* | bc | iql |" in last
    assert "| hopper-medium | *27.0* | 2.0 ± 1.0 | 5.0 ± 0.0 |" in last
    assert "| hopper-medium | *27.0* | 5.0 ± 2.0 | 5.0 ± 0.0 |" in best
    report.check_steps(results, 8)            # a cell written before steps were recorded passes
    with pytest.raises(SystemExit, match=r"bc@hopper-medium \(8\).*--steps 10,000"):
        report.check_steps(results, 10_000)


def test_curves_read_each_seeds_evaluations_from_a_reports_run_folder(tmp_path, capsys):
    cell = run_report(tmp_path, "table")["bc@hopper-pd-noisy"]
    run = (tmp_path / "runs" / cell[0]["run_dir"]).parent
    agent, dataset, length, scores = curves.read_run(run)
    assert (agent, dataset, length) == ("bc", "hopper-pd-noisy", 8)
    assert sorted(scores) == [4, 8]
    assert scores[8] == [c["last"] for c in cell]
    assert max(scores[4][0], scores[8][0]) == cell[0]["best"]
    assert curves.main([str(run), "--out", str(tmp_path / "curves.png"), "--hline", "data=27.4"]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        curves.main([str(run), "--hline", "27.4"])
    assert "give LABEL=SCORE" in capsys.readouterr().err
    assert curves.main([str(run), "--out", str(tmp_path / "named.png"), "--labels", "bc lr 1e-3"]) == 0
    with pytest.raises(SystemExit):
        curves.main([str(run), "--labels", "a", "b"])
    assert "2 names for 1 runs" in capsys.readouterr().err


def test_probe_states_skip_the_cut_tail_of_time_limited_episodes_only():
    ds = episodes_dataset([6, 4], terminal_last=[False, True])     # a time-limit cut, a terminal
    rows = value_probe.probe_states(ds, tail=3, count=100, seed=0)
    assert sorted(rows) == [0, 1, 2, 6, 7, 8, 9]
    with pytest.raises(UserError, match="lower --tail"):
        value_probe.probe_states(episodes_dataset([4], terminal_last=[False]), 5, 10, 0)


def test_steps_to_terminal_counts_down_to_a_fall_and_skips_time_limited_episodes():
    ds = episodes_dataset([3, 4, 2], terminal_last=[True, False, True])
    np.testing.assert_array_equal(value_probe.steps_to_terminal(ds), [2, 1, 0, -1, -1, -1, -1, 1, 0])


def test_value_probe_reads_every_seed_of_a_run_and_refuses_an_agent_without_a_critic(tmp_path):
    cell = run_report(tmp_path, "iql", agent="iql")["iql@hopper-pd-noisy"]
    run = (tmp_path / "runs" / cell[0]["run_dir"]).parent
    rows = value_probe.probe_run(run, count=500, tail=10, near_terminal=True)
    bins = rows[0]["near_terminal"]                       # the PD data's noisiest episodes fall
    assert bins[0]["steps_left"] == "0" and bins[0]["states"] > 0
    assert [b["v"] for b in bins] != [b["v"] for b in rows[1]["near_terminal"]]
    assert "by steps left before a terminal" in value_probe.markdown(rows)
    assert [r["seed"] for r in rows] == [0, 1] and all(r["step"] == 8 for r in rows)
    for r in rows:
        assert all(np.isfinite(r[k]) for k in value_probe.COLUMNS[3:])
        assert 0 <= r["p_uniform_above_data"] <= 1 and -1 <= r["v_corr"] <= 1
    assert rows[0]["v"] != rows[1]["v"]                   # each seed its own networks
    bc = run_report(tmp_path, "bc")["bc@hopper-pd-noisy"]
    with pytest.raises(UserError, match="'bc' has neither a value network nor a critic"):
        value_probe.probe_run((tmp_path / "runs" / bc[0]["run_dir"]).parent)


def test_goal_datasets_find_their_env_and_tables_show_success_beside_ogbench():
    assert report.env_of("pointmaze-medium-stitch") == "pointmaze-medium"
    assert report.env_of("cube-single-play-v0") == "cube-single"
    assert report.env_of("hopper-medium") == "hopper"
    with pytest.raises(SystemExit, match="no env config fits"):
        report.env_of("antsoccer-arena-navigate")
    jobs = report.jobs(Namespace(datasets=["pointmaze-medium-stitch"], agents=["gcbc", "gcbc+aug"],
                                 imitation=None))
    assert jobs[1] == ("gcbc+aug", "pointmaze-medium-stitch",
                       ["agent=gcbc", "env=pointmaze-medium", "env.dataset=pointmaze-medium-stitch",
                        "data.augment=temporal"])
    cell = [{"seed": s, "steps": 10, "last": 20.0 * s, "best": 40.0, "data_score": None} for s in (0, 1)]
    table = report.write_table({"gcbc@pointmaze-medium-stitch": cell}, Namespace(seeds=2, steps=10))
    assert "success rate" in table and "*data*" not in table
    assert "| pointmaze-medium-stitch | 10.0 ± 10.0 |" in table
    assert "| *OGBench, 1M updates* | *23±18* |" in table

"""benchmarks/report.py (the results table, resuming a report killed mid-cell) and
benchmarks/curves.py (learning curves from its run folders)."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report, curves = load_script("report"), load_script("curves")

TINY = ["agent.hidden=[32,32]", "agent.batch_size=32", "data.transitions=3000",
        "trainer.eval_every=4", "trainer.eval_episodes=2", "trainer.progress=false",
        "trainer.compile=eager"]


def run_report(tmp_path, out, *extra):
    argv = ["--steps", "8", "--seeds", "2", "--agents", "bc", "--datasets", "hopper-pd-noisy",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / out),
            "--override", *TINY, *extra]
    assert report.main(argv) == 0
    return json.loads((tmp_path / f"{out}.json").read_text())


def test_a_report_killed_mid_cell_resumes_it_and_ends_as_an_uninterrupted_one(tmp_path):
    first = run_report(tmp_path, "first")
    cell = first["bc@hopper-pd-noisy"]
    assert [c["seed"] for c in cell] == [0, 1]
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

    other = run_report(tmp_path, "other", "agent.lr=1e-3")["bc@hopper-pd-noisy"]
    assert Path(other[0]["run_dir"]).parent != Path(cell[0]["run_dir"]).parent  # not resumed


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

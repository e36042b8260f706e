"""The CLI end to end on a tiny generated dataset: train, checkpoint, kill, resume, evaluate."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rlcore.training.checkpoint import latest_checkpoint, load_checkpoint
from rlcore.cli import main
from rlcore.logger import read_metrics

TINY = ["agent.policy_hidden=[32,32]", "agent.value_hidden=[32,32]", "agent.batch_size=64",
        "env.dataset=hopper-pd-noisy",
        "data.transitions=3000", "trainer.eval_episodes=2", "trainer.progress=false"]


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_and_list(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0 and "odice" in out and "hopper" in out and "hopper-pd-noisy" in out
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "rlcore train agent=odice env=hopper" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["agent=odise"], "unknown agent 'odise'; valid agents: a2pr, bc, bc_all, cpl, fdvl, gcbc, gcdt, gciql, "
                         "gcivl, harpg, hdpo, hiql, iql, nharpg, npg_igt, nsgdm, odice, odice_il, pearl, pg, "
                         "piql, recoil, reinforce, rvs, sac, sft, smore, td3bc"),
    (["env=hoper"], "unknown env 'hoper'; valid envs: acrobot, ant, cartpole, cube-single, halfcheetah, hopper, "
                       "humanoid, inventory-one-store-backlogged, inventory-one-store-lost, inventory-one-warehouse, "
                       "inventory-serial, metaworld-bin-picking, metaworld-button-press-topdown, metaworld-door-open, "
                       "metaworld-drawer-open, metaworld-plate-slide, metaworld-sweep-into, "
                       "pointmaze-large, pointmaze-medium, reacher, swimmer, walker2d"),
    (["env.dataset=hopper-mediun"], "unknown dataset 'hopper-mediun'; valid: "),
    (["trainer.stepz=5"], "trainer.stepz"),
    (["seed=0,1"], "multirun"),
    (["agent.gradient=sideways"], "agent.gradient='sideways': must be one of orthogonal_true_g, true_g, semi_g"),
    (["device=tpu"], "device='tpu' is not a device"),
    (["trainer.captured_adam=lamb"], "trainer.captured_adam='lamb': must be one of foreach, fused"),
    (["trainer.matmul_precision=bf16"], "trainer.matmul_precision='bf16': must be one of highest, high"),
    (["trainer.steps=-5"], "trainer.steps=-5: must be an integer >= 1"),
    (["trainer.eval_every=0"], "trainer.eval_every=0: must be an integer >= 1"),
    (["agent.batch_size=0"], "agent.batch_size=0: must be an integer >= 1"),
    (["agent.discount=1.5"], "agent.discount=1.5: must be a number in (0, 1]"),
    (["agent.lam=0"], "agent.lam=0: must be a number in (0, 1)"),
    (["agent.value_lr=fast"], "agent.value_lr='fast': must be a number >= 0"),
    (["agent.value_lr=-1"], "agent.value_lr=-1: must be a number >= 0"),
    (["trainer.progress=3"], "trainer.progress=3: must be true or false"),
])
def test_bad_input_fails_with_a_message_listing_valid_values(args, message, capsys, tmp_path):
    code, _, err = run_cli(["train", *TINY, *args, f"runs_root={tmp_path}"], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir()), "nothing is written before the config is checked"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_fails_clearly(capsys, tmp_path):
    code, _, err = run_cli(["train", "device=cuda", *TINY, f"runs_root={tmp_path}"], capsys)
    assert code == 2 and "CUDA is not available" in err


def test_train_writes_run_folder_and_table_then_eval(capsys, tmp_path):
    run = tmp_path / "run"
    code, out, _ = run_cli(["train", *TINY, "trainer.steps=60", "trainer.eval_every=30",
                            "trainer.log_every=20", "trainer.checkpoint_every=30", f"run_dir={run}"],
                           capsys)
    assert code == 0
    assert "last score" in out and "hopper-pd-noisy" in out and "D4RL hopper" in out
    for name in ("config.yaml", "metrics.jsonl", "curve.png", "summary.json"):
        assert (run / name).exists(), name
    assert (run / "curve.png").read_bytes()[:4] == b"\x89PNG"
    rows = read_metrics(run)
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [30, 60]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [20, 40, 60]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == \
        ["step_000000030.pt", "step_000000060.pt"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["last_score"] == rows[-1]["score_mean"]

    code, out, _ = run_cli(["eval", str(run), "--episodes", "3"], capsys)
    result = json.loads(out)
    assert code == 0 and result["step"] == 60 and result["episodes"] == 3
    assert (run / "eval-step_000000060.json").exists()


def test_multirun_trains_each_seed_and_reports_mean_and_std(capsys, tmp_path):
    code, out, _ = run_cli(["train", "-m", "seed=0,1", *TINY, "trainer.steps=20",
                            "trainer.eval_every=20", f"runs_root={tmp_path}"], capsys)
    assert code == 0
    runs = sorted((tmp_path / "odice" / "hopper-pd-noisy").iterdir())
    assert [p.name.split("-")[0] for p in runs] == ["seed0", "seed1"]
    assert "n=2" in out


def test_seeds_in_one_process_report_each_seed_as_its_own_run(capsys, tmp_path):
    """seeds=[0,1]: one process, one checkpoint; per seed a folder, a result row, and the
    evaluation a one-seed run would make (seed 0's first evaluation equals the seed=0 run's,
    since both start from the same initialisation and the 0-step policy is what is evaluated)."""
    args = [*TINY, "trainer.steps=2", "trainer.eval_every=1", "trainer.compile=eager",
            "agent.policy_lr=0", "agent.value_lr=0"]   # frozen networks: evaluations comparable
    code, out, _ = run_cli(["train", "seeds=[0,1]", *args, f"run_dir={tmp_path / 'k'}"], capsys)
    assert code == 0 and "n=2" in out
    for seed in (0, 1):
        folder = tmp_path / "k" / f"seed{seed}"
        assert {"metrics.jsonl", "curve.png", "summary.json"} <= {p.name for p in folder.iterdir()}
        assert json.loads((folder / "summary.json").read_text())["seed"] == seed
    assert latest_checkpoint(tmp_path / "k") is not None
    assert run_cli(["train", "seed=1", *args, f"run_dir={tmp_path / 'one'}"], capsys)[0] == 0
    both = [json.loads((tmp_path / "k" / f"seed{s}" / "summary.json").read_text()) for s in (0, 1)]
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert one["last_score"] == both[1]["last_score"] != both[0]["last_score"]


@pytest.mark.parametrize("bad", ["seeds=0", "seeds=[1,1]", "seeds=abc"])
def test_bad_seeds_are_rejected_with_what_is_valid(capsys, bad):
    code, _, err = run_cli(["train", bad, *TINY, "trainer.steps=1"], capsys)
    assert code == 2 and "seeds=" in err


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return [sys.executable, "-m", "rlcore.cli", *args], env


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_parameters(tmp_path):
    steps = ["trainer.steps=1500", "trainer.checkpoint_every=100", "trainer.eval_every=750",
             "trainer.log_every=100", "trainer.keep_checkpoints=2"]
    # the uninterrupted run
    cmd, env = _cli("train", *TINY, *steps, f"run_dir={tmp_path / 'full'}")
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    # the same run, killed (SIGKILL: no clean-up) once a checkpoint exists
    killed = tmp_path / "killed"
    cmd, env = _cli("train", *TINY, *steps, f"run_dir={killed}")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while latest_checkpoint(killed) is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = load_checkpoint(latest_checkpoint(killed))["step"]
    assert interrupted_at < 1500, "the run finished before it could be killed"
    # resume from the run folder
    cmd, env = _cli("train", f"resume={killed}")
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)

    full = load_checkpoint(latest_checkpoint(tmp_path / "full"))
    resumed = load_checkpoint(latest_checkpoint(killed))
    assert full["step"] == resumed["step"] == 1500
    for key, value in full["agent"]["modules"].items():
        assert torch.equal(value, resumed["agent"]["modules"][key]), key
    adam_full = full["agent"]["optimizers"]["policy_opt"]["state"][0]["exp_avg"]
    adam_resumed = resumed["agent"]["optimizers"]["policy_opt"]["state"][0]["exp_avg"]
    assert torch.equal(adam_full, adam_resumed)
    steps_logged = [r["step"] for r in read_metrics(killed) if r["kind"] == "train"]
    assert steps_logged == list(range(100, 1501, 100))           # no gaps, no duplicates
    assert [e["step"] for e in resumed["evals"][0]] == [750, 1500]   # seed 0's evaluations
    assert len(list((killed / "checkpoints").iterdir())) == 2      # keep_checkpoints
    assert not list((killed / "checkpoints").glob(".*.tmp"))       # no half-written files


def test_several_updates_per_call_train_the_same_run(capsys, tmp_path):
    """trainer.updates_per_call=4 steps the loop by 4: the same updates, logs and evaluations."""
    steps = ["trainer.steps=200", "trainer.log_every=100", "trainer.eval_every=200",
             "trainer.checkpoint_every=200"]
    for name, per_call in (("one", 1), ("four", 4)):
        code, _, _ = run_cli(["train", *TINY, *steps, f"trainer.updates_per_call={per_call}",
                              f"run_dir={tmp_path / name}"], capsys)
        assert code == 0
    one, four = (load_checkpoint(latest_checkpoint(tmp_path / n)) for n in ("one", "four"))
    for key, value in one["agent"]["modules"].items():
        assert torch.equal(value, four["agent"]["modules"][key]), key
    assert one["evals"] == four["evals"]
    logged = [[r for r in read_metrics(tmp_path / n) if r["kind"] == "train"] for n in ("one", "four")]
    assert [r["step"] for r in logged[0]] == [r["step"] for r in logged[1]] == [100, 200]
    assert [r["value_loss"] for r in logged[0]] == pytest.approx([r["value_loss"] for r in logged[1]],
                                                                  rel=1e-5)
    code, _, err = run_cli(["train", *TINY, *steps, "trainer.updates_per_call=3",
                            f"run_dir={tmp_path / 'three'}"], capsys)
    assert code == 2 and "are not multiples of 3" in err


def _write_d4rl_file(path, obs_dim, n=2000, episode=200):
    """A file as D4RL ships it: plain datasets, float64 where D4RL has them, no metadata."""
    import h5py
    import numpy as np
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["observations"] = rng.standard_normal((n, obs_dim))
        f["next_observations"] = rng.standard_normal((n, obs_dim))
        f["actions"] = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        f["rewards"] = rng.random(n) * np.repeat(np.arange(n // episode) + 1, episode)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = (np.arange(n) % episode) == episode - 1
    return path


def test_trains_on_a_d4rl_hdf5_file_with_d4rl_hopper_references(capsys, tmp_path):
    path = _write_d4rl_file(tmp_path / "hopper_medium-v2.hdf5", obs_dim=11)
    run = tmp_path / "run"
    code, out, _ = run_cli(["train", *TINY, f"env.dataset={path}", "trainer.steps=20",
                            "trainer.eval_every=20", f"run_dir={run}"], capsys)
    assert code == 0
    assert "hopper_medium-v2" in out and "reference: D4RL hopper" in out


def test_dataset_with_the_wrong_observation_size_is_refused(capsys, tmp_path):
    path = _write_d4rl_file(tmp_path / "walker2d_medium-v2.hdf5", obs_dim=17)
    code, _, err = run_cli(["train", *TINY, f"env.dataset={path}", "trainer.steps=20",
                            f"runs_root={tmp_path}"], capsys)
    assert code == 2
    assert "17-dim observations but Hopper-v5 (env=hopper) has 11" in err


def test_bench_prints_each_loop_with_its_ratio_and_saves_json(capsys, tmp_path):
    out = tmp_path / "bench.json"
    code, text, _ = run_cli(["bench", "agent.policy_hidden=[32]", "agent.value_hidden=[32]",
                             "bench.updates=5", "bench.warmup=2", "bench.transitions=500",
                             "bench.modes=[eager]", "bench.seeds=2", f"bench.out={out}"], capsys)
    assert code == 0 and "reference" in text and "rlcore eager" in text and "2 seeds" in text
    result = json.loads(out.read_text())
    assert [r["ratio"] for r in result["rows"]][0] == 1.0
    assert [r["seeds"] for r in result["rows"]] == [1, 1, 2]
    assert result["device"] == "cpu" and result["batch_size"] == 256
    code, _, err = run_cli(["bench", "bench.modes=[eager,cudagraphs]", f"bench.out={out}"], capsys)
    assert code == 2 and "cudagraphs needs a CUDA device" in err


def test_bench_sustained_times_late_updates_on_real_data_beside_the_first(capsys, tmp_path):
    out = tmp_path / "bench.json"
    code, text, _ = run_cli(["bench", "agent=bc", "agent.hidden=[16]", "agent.batch_size=32",
                             "env.dataset=hopper-pd-noisy", "data.transitions=3000",
                             "bench.updates=5", "bench.warmup=2", "bench.transitions=500",
                             "bench.modes=[eager]", "bench.seeds=1", "bench.sustained=2000",
                             f"bench.out={out}"], capsys)
    assert code == 0 and "sustained, eager, hopper-pd-noisy" in text
    sustained = json.loads(out.read_text())["sustained"]
    assert sustained["updates"] == 2000 and sustained["dataset"] == "hopper-pd-noisy"
    assert sustained["first_updates_per_s"] > 0 and sustained["last_updates_per_s"] > 0
    assert sustained["last_over_first"] == sustained["last_updates_per_s"] / sustained["first_updates_per_s"]
    code, _, err = run_cli(["bench", "bench.sustained=500", f"bench.out={out}"], capsys)
    assert code == 2 and "bench.sustained=500: must be 0 or an integer >= 2000" in err


def test_data_make_info_and_path_of_a_generated_dataset(capsys, tmp_path):
    args = ["hopper-pd-noisy", "--transitions", "2000", "--seed", "4"]
    code, out, _ = run_cli(["data", "make", *args], capsys)
    assert code == 0 and "2000 transitions" in out and "rlcore/hopper/pd-noisy-n2000-s4-v0" in out
    code, out, _ = run_cli(["data", "info", *args], capsys)
    info = json.loads(out)
    assert info["transitions"] == 2000 and info["reference"] == "D4RL hopper"
    assert abs(info["score_mean"] - 100 * (info["return_mean"] + 20.272305) / 3254.572305) < 1e-6
    code, out, _ = run_cli(["data", "path", *args], capsys)
    assert out.strip().endswith("rlcore/hopper/pd-noisy-n2000-s4-v0")
    code, out, _ = run_cli(["data", "path", "hopper-medium-replay-v2"], capsys)
    assert out.strip().endswith("d4rl/hopper-medium-replay-v2.hdf5")
    code, _, err = run_cli(["data", "info", "hopper-mediun"], capsys)
    assert code == 2 and "unknown dataset 'hopper-mediun'" in err


def _leave_a_mark(path):
    """What a malicious pickle would run on load (here: it writes a file)."""
    open(path, "w").close()


class PickledCallable:
    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        return _leave_a_mark, (self.mark,)


def test_a_crafted_checkpoint_is_refused_and_never_run(capsys, tmp_path):
    run = tmp_path / "run"
    code, _, _ = run_cli(["train", *TINY, "trainer.steps=20", "trainer.eval_every=20",
                          "trainer.checkpoint_every=10", "trainer.log_every=10", f"run_dir={run}"], capsys)
    assert code == 0
    checkpoint = latest_checkpoint(run)
    state = torch.load(checkpoint, weights_only=True)
    mark = tmp_path / "pickle-ran"
    state["evals"] = PickledCallable(str(mark))
    torch.save(state, checkpoint)
    for args in (["eval", str(run), "--episodes", "1"], ["train", f"resume={run}"]):
        code, _, err = run_cli(args, capsys)
        assert code == 2 and "holds pickled objects" in err and "not loaded" in err
        assert not mark.exists()

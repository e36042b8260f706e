"""SAC's pieces against their formulas, a learning check, and the online training loop."""
import math

import pytest
import torch
from tensordict import TensorDict

from rlcore.agent import Spec
from rlcore.agents.sac import SAC
from rlcore.training.checkpoint import latest_checkpoint, load_checkpoint
from rlcore.cli import main
from rlcore.config import load_config
from rlcore.logger import read_metrics
from rlcore.agent.nets import TanhGaussianPolicy


def make_sac(**overrides):
    items = ["agent=sac"] + [f"agent.{k}={v}" for k, v in overrides.items()]
    return SAC(Spec(obs_dim=3, action_dim=2), load_config(items).agent)


def test_tanh_gaussian_log_prob_matches_torch_transformed_distribution():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(3, 2, [16])
    obs = torch.randn(64, 3)
    torch.manual_seed(1)
    action, log_prob = policy.sample(obs)
    mean, log_std = policy(obs)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()])
    torch.testing.assert_close(log_prob, dist.log_prob(action).sum(-1), rtol=1e-4, atol=1e-4)
    assert action.abs().max() < 1


def test_critic_target_is_the_soft_bellman_backup():
    agent = make_sac(hidden="[16]")
    b = TensorDict({"observations": torch.randn(8, 3), "actions": torch.rand(8, 2) * 2 - 1,
                    "rewards": torch.randn(8), "next_observations": torch.randn(8, 3),
                    "terminals": torch.tensor([0, 1, 0, 0, 1, 0, 0, 0.])}, batch_size=[8])
    torch.manual_seed(5)
    q_before = agent.q(agent.critic, b["observations"], b["actions"]).detach()
    a_next, logp_next = agent.actor.sample(b["next_observations"])
    q_next = agent.q(agent.target_critic, b["next_observations"], a_next).min(0).values
    y = b["rewards"] + 0.99 * (1 - b["terminals"]) * (q_next - 1.0 * logp_next)   # alpha = e^0
    expected = ((q_before - y.detach()) ** 2).mean(1).sum()
    torch.manual_seed(5)
    metrics = agent.update(b)
    torch.testing.assert_close(metrics["critic_loss"], expected)
    assert metrics["alpha"] == 1.0


def test_temperature_rises_when_entropy_is_below_target():
    agent = make_sac(hidden="[16]")
    with torch.no_grad():  # a nearly deterministic policy: entropy far below -|A|
        agent.actor.net.net[-1].bias[2:] = -5.0
        agent.actor.net.net[-1].weight[2:] = 0.0
    b = TensorDict({"observations": torch.randn(32, 3), "actions": torch.zeros(32, 2),
                    "rewards": torch.zeros(32), "next_observations": torch.randn(32, 3),
                    "terminals": torch.zeros(32)}, batch_size=[32])
    agent.update(b)
    assert agent.log_alpha.item() > 0


def test_learns_the_best_action_of_a_one_step_task():
    """r = -(a - 0.3)^2 summed over action dims, every step terminal: the optimum is a = 0.3."""
    torch.manual_seed(0)
    agent = make_sac(hidden="[64,64]", init_log_alpha=math.log(0.01), alpha_lr=0.0)
    for _ in range(2000):  # the critic fits the quadratic by about 1500 updates
        s = torch.randn(128, 3)
        a = torch.rand(128, 2) * 2 - 1
        b = TensorDict({"observations": s, "actions": a, "rewards": -((a - 0.3) ** 2).sum(-1),
                        "next_observations": s, "terminals": torch.ones(128)}, batch_size=[128])
        agent.update(b)
    action = agent.act(torch.randn(256, 3))
    assert (action.mean(0) - 0.3).abs().max() < 0.1, action.mean(0)


TINY = ["agent=sac", "agent.hidden=[32,32]", "agent.batch_size=32", "agent.start_steps=100",
        "agent.update_after=100", "trainer.eval_episodes=2", "trainer.progress=false",
        "trainer.log_every=50"]


def test_online_training_collects_snapshots_and_resumes_with_its_buffer(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "trainer.steps=200", "trainer.eval_every=100",
                 "trainer.checkpoint_every=100", f"run_dir={run}"]) == 0
    rows = read_metrics(run)
    first_train = [r for r in rows if r["kind"] == "train"]
    assert "critic_loss" not in first_train[0]           # step 50: still collecting
    assert "critic_loss" in first_train[-1]              # updates after 100 transitions
    assert sorted(p.name for p in (run / "policies").iterdir()) == \
        ["step_000000100.pt", "step_000000200.pt"]
    state = load_checkpoint(latest_checkpoint(run))
    assert len(state["buffer"]["rewards"]) == 200
    # a run made before seeds=K: its checkpoint kept one seed's evaluations as a flat list,
    # and its config lacked the settings added since
    state["evals"] = state["evals"][0]
    torch.save(state, latest_checkpoint(run))
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("  compile: auto\n", ""))
    assert "compile" not in (run / "config.yaml").read_text()
    # continue the run for 50 more steps: the buffer comes back with it
    assert main(["train", f"resume={run}", "trainer.steps=250"]) == 0
    state = load_checkpoint(latest_checkpoint(run))
    assert state["step"] == 250 and len(state["buffer"]["rewards"]) == 250
    assert [e["step"] for e in state["evals"][0]] == [100, 200, 250]


def test_exported_policies_make_deterministic_medium_expert_datasets(tmp_path, monkeypatch):
    import rlcore.envs.mujoco as recipes
    from rlcore.registry import DATASETS
    DATASETS_GET = DATASETS.get
    from rlcore.data.datasets import load_dataset
    run = tmp_path / "run"
    assert main(["train", *TINY, "trainer.steps=300", "trainer.eval_every=100", f"run_dir={run}"]) == 0
    out = tmp_path / "policies"
    for quality in ("medium", "expert"):
        assert main(["data", "export-policy", str(run), "--quality", quality, "--out", str(out)]) == 0
    expert = torch.load(out / "hopper-expert.pt", weights_only=False)
    medium = torch.load(out / "hopper-medium.pt", weights_only=False)
    returns = [r["return_mean"] for r in read_metrics(run) if r["kind"] == "eval"]
    assert expert["eval"]["return_mean"] == max(returns) == expert["expert_return"]
    # medium: training early-stopped, i.e. the first snapshot to reach a third of the best
    first = next(r for r in returns if r >= max(returns) / 3)
    assert medium["eval"]["return_mean"] == first
    # a run short of expert level: a given target return instead; none reaches it: the nearest
    for target, expected in ((min(returns), returns[0]), (max(returns) + 1, max(returns))):
        assert main(["data", "export-policy", str(run), "--quality", "medium", "--target-return",
                     str(target), "--out", str(tmp_path / "by-target")]) == 0
        by_target = torch.load(tmp_path / "by-target" / "hopper-medium.pt", weights_only=False)
        assert by_target["eval"]["return_mean"] == expected

    monkeypatch.setattr(recipes, "POLICY_DIR", out)
    # medium-replay: the random phase (start_steps=100 uniform actions), then the policies that
    # acted, one per `every` steps (here up to the step-300 snapshot, every 100 steps)
    assert (out / "hopper-medium-replay.pt").exists()
    from rlcore.data.policies import export_replay
    torch.save({"train_step": 300, "obs_dim": 11, "action_dim": 3}, tmp_path / "at300.pt")
    export_replay(run, tmp_path / "at300.pt", out, every=100)
    replay = torch.load(out / "hopper-medium-replay.pt", weights_only=False)
    assert replay["random_steps"] == 100 and replay["medium_step"] == 300
    assert [(p["steps"], p["policy_step"]) for p in replay["phases"]] == [(100, 100), (100, 200)]
    made = DATASETS_GET("hopper-medium-replay").make(10**6, seed=0, progress=False)
    assert len(made) == 300                                        # its natural size, not more
    first = torch.as_tensor(made.actions[:100])
    assert first.abs().max() <= 1 and first.std() > 0.5           # uniform on [-1, 1]: std 0.58
    a = load_dataset("hopper-medium-expert", transitions=1000, seed=3, progress=False)
    from rlcore.registry import DATASETS
    b = DATASETS.get("hopper-medium-expert").make(1000, seed=3, progress=False)  # made again
    assert len(a) == 1000 and a.timeouts[499] | a.terminals[499]   # halves end cleanly
    torch.testing.assert_close(torch.as_tensor(a.actions), torch.as_tensor(b.actions))
    assert torch.as_tensor(a.actions).abs().max() < 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_online_training_runs_with_its_update_captured(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "device=cuda", "trainer.compile=cudagraphs", "trainer.steps=300",
                 "trainer.eval_every=300", f"run_dir={run}"]) == 0
    losses = [r["critic_loss"] for r in read_metrics(run) if "critic_loss" in r]
    assert len(losses) >= 4 and all(math.isfinite(x) for x in losses)   # updates from step 100


def test_medium_is_where_training_would_have_been_early_stopped(tmp_path):
    """D4RL's medium: the first snapshot to reach the target, not a later one nearer to it."""
    from rlcore.data.policies import select_snapshot
    (tmp_path / "policies").mkdir()
    for step, ret in {1000: 10.0, 2000: 31.0, 3000: 90.0, 4000: 30.5}.items():
        torch.save({"step": step, "eval": {"return_mean": ret}},
                   tmp_path / "policies" / f"step_{step:09d}.pt")
    assert select_snapshot(tmp_path, "medium")[1]["step"] == 2000           # 90 / 3 = 30
    assert select_snapshot(tmp_path, "medium", target_return=95.0)[1]["step"] == 3000  # nearest
    path, snapshot, best = select_snapshot(tmp_path, "expert")
    assert snapshot["step"] == 3000 and best == 90.0

"""Preference learning: CPL's loss by hand, the labels (regret and return, ties, noise), the
segment-pair sampler, stored labellings, the staged agents, P-IQL's transitions, Meta-World
runs end to end, and bad input."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rlcore.training.buffer import Buffer
from rlcore.config import load_config
from rlcore.errors import ConfigError
from rlcore.data.preferences import (Labelling, PreferenceSampler, dataset_preferences, make_preferences,
                                preference_label, preferences_path, regret_scores, segment_sums)
from tests.conftest import agent_and_buffer, episodes_dataset

LENGTHS = [5, 40, 13, 60, 30, 20]


def authors_biased_bce(adv1, adv2, y, bias):
    """jhejna/cpl research/algs/cpl.py biased_bce_with_logits, verbatim."""
    logit21 = adv2 - bias * adv1
    logit12 = adv1 - bias * adv2
    max21 = torch.clamp(-logit21, min=0, max=None)
    max12 = torch.clamp(-logit12, min=0, max=None)
    nlp21 = torch.log(torch.exp(-max21) + torch.exp(-logit21 - max21)) + max21
    nlp12 = torch.log(torch.exp(-max12) + torch.exp(-logit12 - max12)) + max12
    return (y * nlp21 + (1 - y) * nlp12).mean()


def test_cpl_loss_matches_the_hand_computation_and_the_authors_code():
    from rlcore.agents.cpl import biased_bce_with_logits
    adv1 = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    adv2 = torch.tensor([[0.0, 1.0, 0.5, -1.0]])
    y = torch.tensor([[1.0, 0.0, 0.5, 1.0]])
    loss, accuracy = biased_bce_with_logits(adv1, adv2, y, bias=0.5)
    # by hand: y log(1 + e^(0.5 a1 - a2)) + (1 - y) log(1 + e^(0.5 a2 - a1))
    hand = [np.log1p(np.exp(0.5 - 0.0)), np.log1p(np.exp(0.5 * 1.0 + 2.0)),
            0.5 * np.log1p(np.exp(0.25 - 0.5)) + 0.5 * np.log1p(np.exp(0.25 - 0.5)),
            np.log1p(np.exp(1.5 + 1.0))]
    assert loss.item() == pytest.approx(np.mean(hand), rel=1e-6)
    assert loss.item() == pytest.approx(authors_biased_bce(adv1, adv2, y, 0.5).item(), rel=1e-6)
    # accuracy: (adv2 > adv1) == round(y): F==1? no; T==0? no; F==round(.5)=0 yes; F==1 no
    assert accuracy.item() == pytest.approx(0.25)


def cpl_agent(**overrides):
    agent, buffer = agent_and_buffer("cpl", torch.device("cpu"), seeds=2,
                                     overrides=[f"agent.{k}={v}" for k, v in overrides.items()])
    return agent, buffer


def test_cpl_loss_falls_when_the_preferred_segment_becomes_more_likely():
    agent, buffer = cpl_agent(bc_steps=0)
    batch = agent.sample(buffer, 16)
    batch["labels"] = torch.ones_like(batch["labels"])                 # the second is preferred
    before = agent.losses(batch)[0]
    with torch.no_grad():                                              # its actions -> pi's own
        batch["actions"][:, :, 1] = agent.policy(batch["observations"][:, :, 1])
    after = agent.losses(batch)[0]
    assert (after < before).all()
    # the log-probability is -||pi(s) - a||^2 summed over the segment, times alpha
    lp = -(agent.policy(batch["observations"]) - batch["actions"]).pow(2).sum(-1)
    a = agent.cfg.alpha * lp.sum(-1)
    expected = F.softplus(agent.cfg.contrastive_bias * a[..., 0] - a[..., 1]).mean(1)
    assert torch.allclose(after, expected, atol=1e-6)


def test_cpl_pretrains_with_bc_then_restarts_adam_with_a_warm_up_from_zero():
    agent, buffer = cpl_agent(bc_steps=3, warmup_steps=4, cpl_lr=5e-4)
    for step in range(3):
        assert agent.phase == 0
        agent.update(agent.sample(buffer, 8))
    assert agent.policy_opt.state                                      # BC moments exist
    agent.begin_phase(3)
    assert agent.phase == 1 and not agent.policy_opt.state             # a fresh Adam
    assert agent.policy_opt.param_groups[0]["lr"] == 5e-4               # at the stage's own lr
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.update(agent.sample(buffer, 8))                              # lr x 0 at its first step
    assert all(torch.equal(b, p) for b, p in zip(before, agent.policy.parameters()))
    agent.update(agent.sample(buffer, 8))                              # lr x 1/4
    assert not all(torch.equal(b, p) for b, p in zip(before, agent.policy.parameters()))


def test_cpl_kl_measures_log_probabilities_against_the_pretrained_policy():
    agent, buffer = cpl_agent(bc_steps=2, variant="kl")
    for _ in range(2):
        agent.update(agent.sample(buffer, 8))
    agent.begin_phase(2)
    for p, q in zip(agent.policy.parameters(), agent.reference.parameters()):
        assert torch.equal(p, q) and not q.requires_grad
    batch = agent.sample(buffer, 8)
    assert torch.allclose(agent.losses(batch)[0], torch.full((2,), np.log(2.0)), atol=1e-6)


def toy(lengths=LENGTHS, seed=0):
    data = episodes_dataset(lengths, seed=seed)
    return data


def test_labels_prefer_the_higher_score_and_ties_are_half():
    first = np.array([1.0, 2.0, 3.0])
    second = np.array([2.0, 2.0, 1.0])
    assert preference_label(first, second).tolist() == [1.0, 0.5, 0.0]
    data = toy()
    prefs = make_preferences(data, Labelling(labels="sparse", labeller="return", pairs=300,
                                             segment_length=4), progress=False)
    returns = segment_sums(data.rewards, prefs.starts, 4)
    assert np.allclose(prefs.scores, returns)
    assert np.array_equal(prefs.labels, preference_label(returns[prefs.first], returns[prefs.second]))


def test_regret_scores_sum_rewards_and_the_value_difference(monkeypatch):
    data = toy()
    values = np.arange(len(data), dtype=np.float64) * 0.1              # V(s_t) = t / 10
    starts = np.array([0, 10, 50])
    scores = regret_scores(data, starts, 4, values)
    for start, score in zip(starts, scores):
        hand = data.rewards[start:start + 3].sum() + values[start + 3] - values[start]
        assert score == pytest.approx(hand, rel=1e-6)
    gamma = 0.9                                     # discounted: sum_t g^t (r + g V' - V)
    hand = sum(gamma ** t * (data.rewards[10 + t] + gamma * values[11 + t] - values[10 + t])
               for t in range(3))
    assert regret_scores(data, np.array([10]), 4, values, gamma)[0] == pytest.approx(hand, rel=1e-6)
    # the labeller's V comes from oracle_values: a known V makes a known preference
    import rlcore.data.preferences as prefs_module
    monkeypatch.setattr(prefs_module, "oracle_values", lambda *a, **k: (values * 100, 0.0))
    prefs = make_preferences(data, Labelling(labels="sparse", pairs=200, segment_length=4),
                             progress=False)
    higher = prefs.scores[prefs.second] > prefs.scores[prefs.first]
    assert np.array_equal(prefs.labels == 1.0, higher)
    assert (prefs.scores == regret_scores(data, prefs.starts, 4, values * 100)).all()


def test_label_noise_flips_that_fraction_of_fixed_pairs():
    data = toy()
    how = dict(labels="sparse", labeller="return", pairs=4000, segment_length=4)
    clean = make_preferences(data, Labelling(**how), progress=False)
    noisy = make_preferences(data, Labelling(**how, label_noise=0.2), progress=False)
    assert np.array_equal(clean.starts, noisy.starts)
    differ = clean.labels != noisy.labels
    flipped, ties = noisy.metadata["flipped"], (clean.labels == 0.5).sum()
    assert flipped - ties <= differ.sum() <= flipped                   # a flipped tie stays 0.5
    assert abs(noisy.metadata["flipped"] / 4000 - 0.2) < 0.03


def test_the_pair_sampler_stays_inside_episodes_and_labels_dense_pairs_by_score():
    data = toy()
    prefs = make_preferences(data, Labelling(labeller="return", segments=300, segment_length=8),
                             progress=False)
    buffer = Buffer.from_dataset(data, seed=3)
    batch = PreferenceSampler(buffer, prefs).sample(4000)
    index, episode = batch["observations"][..., 0], batch["observations"][..., 1]
    assert batch["observations"].shape == (4000, 2, 8, 3)
    assert (episode == episode[..., :1]).all()                          # one episode per segment
    assert (index.diff(dim=-1) == 1).all()                              # consecutive steps
    score_of = dict(zip(prefs.starts.tolist(), prefs.scores.tolist()))
    first = np.array([score_of[int(i)] for i in index[:, 0, 0]])
    second = np.array([score_of[int(i)] for i in index[:, 1, 0]])
    assert np.array_equal(batch["labels"].numpy(), preference_label(first, second).astype(np.float32))


def test_dense_label_noise_flips_comparisons_as_they_are_drawn():
    data = toy()
    prefs = make_preferences(data, Labelling(labeller="return", segments=300, segment_length=8),
                             progress=False)
    clean = PreferenceSampler(Buffer.from_dataset(data, seed=3), prefs).sample(20000)
    noisy = PreferenceSampler(Buffer.from_dataset(data, seed=3), prefs, 0.3).sample(20000)
    differ = (clean["labels"] != noisy["labels"]).float().mean().item()
    assert abs(differ - 0.3) < 0.02


def test_a_labelling_is_made_once_and_a_second_one_reuses_the_fitted_value(tmp_path, monkeypatch):
    import rlcore.data.preferences as prefs_module
    data = toy()
    fits = []
    real_fit = prefs_module.fit_value
    monkeypatch.setattr(prefs_module, "fit_value",
                        lambda *a, **k: fits.append(1) or real_fit(*a, **{**k, "batch_size": 32}))
    how = Labelling(segments=50, segment_length=4, oracle_steps=20)
    first = dataset_preferences(data, tmp_path / "data.hdf5", how, progress=False)
    assert preferences_path(tmp_path / "data.hdf5", how).exists()
    monkeypatch.setattr(prefs_module, "make_preferences", lambda *a, **k: pytest.fail("remade"))
    again = dataset_preferences(data, tmp_path / "data.hdf5", how, progress=False)
    assert np.array_equal(first.scores, again.scores)
    monkeypatch.undo()
    monkeypatch.setattr(prefs_module, "fit_value", lambda *a, **k: pytest.fail("V refitted"))
    sparse = dataset_preferences(data, tmp_path / "data.hdf5",
                                 Labelling(labels="sparse", pairs=30, segment_length=4, oracle_steps=20),
                                 progress=False)
    assert len(fits) == 1 and sparse.metadata["labels"] == "sparse"


def test_sft_clones_only_preferred_segments_after_its_first_stage():
    agent, buffer = agent_and_buffer("sft", torch.device("cpu"), overrides=["agent.bc_all_steps=1"])
    batch = agent.sample(buffer, 8)
    batch["labels"] = torch.zeros_like(batch["labels"])                # the first is preferred
    agent.begin_phase(1)
    with torch.no_grad():
        batch["actions"][:, :, 0] = agent.policy(batch["observations"][:, :, 0])
    before = [p.detach().clone() for p in agent.policy.parameters()]
    metrics = agent.update(batch)                                      # nothing left to fit
    assert metrics["bc_loss"].item() == pytest.approx(0.0, abs=1e-10)
    assert all(torch.allclose(b, p) for b, p in zip(before, agent.policy.parameters()))


def test_piql_fits_its_reward_then_gives_iql_the_segments_transitions(monkeypatch):
    from rlcore.agents.iql import IQL
    agent, buffer = agent_and_buffer("piql", torch.device("cpu"), seeds=2,
                                     overrides=["agent.reward_steps=1"])
    seen = []
    real = IQL.update
    monkeypatch.setattr(IQL, "update", lambda self, t: seen.append(t) or real(self, t))
    batch = agent.sample(buffer, 8)
    reward_before = [p.detach().clone() for p in agent.reward_model.parameters()]
    metrics = agent.update(batch)
    assert "reward_loss" in metrics
    transitions = seen[0]
    assert transitions["observations"].shape == (2, 8 * 2 * 7, 11)     # L - 1 per segment
    obs = batch["observations"]
    assert torch.equal(transitions["next_observations"], obs[:, :, :, 1:].reshape(2, -1, 11))
    with torch.no_grad():
        expected = agent.reward(batch)[:, :, :, :-1].reshape(2, -1)
    assert not torch.equal(transitions["rewards"], expected)           # the model moved since
    agent.begin_phase(1)
    agent.update(batch)                                                # frozen from here on
    after = [p.detach().clone() for p in agent.reward_model.parameters()]
    agent.update(batch)
    assert all(torch.equal(a, p) for a, p in zip(after, agent.reward_model.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(after, reward_before))


def test_bad_preference_settings_fail_with_what_is_valid():
    with pytest.raises(ConfigError, match="contrastive_bias"):
        load_config(["agent=cpl", "agent.contrastive_bias=1.5"])
    with pytest.raises(ConfigError, match="contrastive_bias"):
        load_config(["agent=cpl", "agent.contrastive_bias=0"])
    with pytest.raises(ConfigError, match="env.labels"):
        load_config(["agent=cpl", "env=metaworld-drawer-open", "env.labels=all"])
    with pytest.raises(ConfigError, match="label_noise"):
        Labelling(label_noise=1.0)


def test_a_preference_agent_on_data_without_labels_fails_before_any_folder(tmp_path):
    from rlcore.training.trainer import train
    with pytest.raises(ConfigError, match="learns from preference labels"):
        train(load_config(["agent=cpl", "env=hopper", f"run_dir={tmp_path / 'run'}"]))
    assert not (tmp_path / "run").exists()


# ---- Meta-World, end to end ------------------------------------------------------------------

def metaworld_run(tmp_path, name, steps, *extra):
    from rlcore.training.trainer import train
    common = ["env=metaworld-drawer-open", "data.transitions=500", "env.oracle_steps=20",
              "env.segments=40", "env.segment_length=16", "agent.hidden=[32,32]",
              "agent.batch_size=4", "trainer.eval_episodes=1", "trainer.log_every=2",
              "trainer.eval_every=4", "trainer.checkpoint_every=4", "trainer.compile=eager",
              "trainer.progress=false", "seeds=2", f"trainer.steps={steps}",
              f"run_dir={tmp_path / name}", *extra]
    return train(load_config(common))


def test_metaworld_success_counts_at_any_step_with_the_scripted_expert():
    pytest.importorskip("metaworld")
    from rlcore.envs.metaworld import GYM_ID, MetaWorldTask
    from rlcore.evaluation import Evaluator
    from rlcore.evaluation.scores import SUCCESS

    class Expert:
        multi_seed = False

        def __init__(self):
            self.policy = MetaWorldTask("drawer-open").expert()

        def act(self, obs, deterministic=True):
            return torch.as_tensor(np.stack([self.policy(o) for o in obs.numpy()]))

    evaluator = Evaluator(GYM_ID, 2, SUCCESS, torch.device("cpu"),
                          {"task": "drawer-open", "max_episode_steps": 120})
    try:
        result = evaluator(Expert(), 0)[0]
    finally:
        evaluator.close()
    assert result["success_rate"] == 1.0 and result["score_mean"] == 100.0
    assert result["length_mean"] == 120 and result["return_mean"] > 0


@pytest.mark.slow
def test_cpl_on_metaworld_resumes_across_its_stage_as_an_uninterrupted_run(tmp_path):
    pytest.importorskip("metaworld")
    from rlcore.training.checkpoint import latest_checkpoint, load_checkpoint
    extra = ["agent=cpl", "agent.bc_steps=4", "agent.warmup_steps=2"]
    results = metaworld_run(tmp_path, "full", 8, *extra)
    assert {"success_rate", "return_mean"} <= set(__import__("json").loads(
        (results[0].run_dir / "metrics.jsonl").read_text().splitlines()[-1]))
    metaworld_run(tmp_path, "cut", 4, *extra)
    metaworld_run(tmp_path, "cut", 8, *extra, f"resume={tmp_path / 'cut'}")
    full, resumed = (load_checkpoint(latest_checkpoint(tmp_path / n)) for n in ("full", "cut"))
    assert full["step"] == resumed["step"] == 8
    for key, value in full["agent"]["modules"].items():
        assert torch.equal(value, resumed["agent"]["modules"][key]), key


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["sft", "bc_all", "piql"])
def test_the_baselines_train_on_sparse_metaworld_labels(tmp_path, agent):
    pytest.importorskip("metaworld")
    results = metaworld_run(tmp_path, agent, 4, f"agent={agent}", "env.labels=sparse",
                            "env.pairs=20", "env.labeller=return")
    assert len(results) == 2 and all(0 <= r.last_score <= 100 for r in results)


def test_the_bench_times_a_preference_agent_beside_a_host_loop(tmp_path):
    pytest.importorskip("metaworld")
    from rlcore.cli import main
    out = tmp_path / "bench.json"
    assert main(["bench", "agent=cpl", "env=metaworld-drawer-open", "device=cpu", "bench.updates=3",
                 "bench.warmup=1", "bench.modes=[eager]", "bench.seeds=2", "bench.transitions=3000",
                 "agent.hidden=[32,32]", "agent.batch_size=4", f"bench.out={out}"]) == 0
    rows = __import__("json").loads(out.read_text())["rows"]
    assert [r["seeds"] for r in rows] == [1, 1, 2] and all(r["updates_per_s"] > 0 for r in rows)

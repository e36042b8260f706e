"""BC, TD3+BC, IQL and f-DVL: their losses against the equations on tiny tensors, their optima,
the seeds contract, and a one-step bandit where value-based agents must beat cloning."""
import pytest
import torch
from dataclasses import replace
from tensordict import TensorDict

from rlcore.agent import Spec, apply_gradients
from rlcore.agents.fdvl import dual_value_loss
from rlcore.config import load_config
from rlcore.agent.objectives import awr_weight, cosine_scale, effective_batch_share, expectile_loss
from rlcore.registry import AGENTS
from rlcore.training.seeds import copy_seed_into
from tests.conftest import bandit_dataset

OFFLINE = ["bc", "td3bc", "iql", "fdvl", "a2pr", "recoil", "odice"]
SMALL = {"bc": ["agent.hidden=[32,32]"], "td3bc": ["agent.hidden=[32,32]"],
         "a2pr": ["agent.actor_hidden=[32,32]", "agent.critic_hidden=[32,32]",
                  "agent.vae_hidden=[32,32]"],
         "iql": ["agent.hidden=[32,32]"], "fdvl": ["agent.hidden=[32,32]"],
         "recoil": ["agent.hidden=[32,32]"],
         "odice": ["agent.value_hidden=[32,32]", "agent.policy_hidden=[32,32]"]}


def make(name, *overrides, seeds=1):
    cfg = load_config([f"agent={name}", *SMALL[name], *overrides]).agent
    return AGENTS.get(name)(Spec(obs_dim=4, action_dim=2, seeds=seeds), cfg)


def batch(n=32, seed=0, seeds=1):
    g = torch.Generator().manual_seed(seed)
    m = n * seeds
    return TensorDict({"observations": torch.randn(m, 4, generator=g),
                       "next_observations": torch.randn(m, 4, generator=g),
                       "actions": torch.rand(m, 2, generator=g) * 2 - 1,
                       "rewards": torch.randn(m, generator=g),
                       "terminals": (torch.rand(m, generator=g) < 0.2).float()},
                      batch_size=[m]).reshape(seeds, n)


def minimise(loss_of_v, init=0.0, steps=3000, lr=0.05):
    v = torch.tensor(init, requires_grad=True)
    opt = torch.optim.Adam([v], lr=lr)
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * (1 - i / steps) + 1e-4
        opt.zero_grad()
        loss_of_v(v).backward()
        opt.step()
    return v.detach()


# ---- losses and their optima ---------------------------------------------------------------
def test_dual_value_losses_match_the_authors_formulas():
    x = torch.tensor([[-6.0, -1.0, 0.0, 0.5, 3.0]])
    a = 0.7
    torch.testing.assert_close(dual_value_loss(x, "chi_square", a),
                               a * torch.clamp_min(x + x ** 2 / 4, 0) - (1 - a) * x)
    torch.testing.assert_close(dual_value_loss(x, "total_variation", a),
                               a * torch.clamp_min(x, 0) - (1 - a) * x)
    z = torch.clamp_max(x / a, 5.0)
    m = max(float(z.max()), -1.0)
    expected = torch.exp(z - m) - z * torch.exp(torch.tensor(-m)) - torch.exp(torch.tensor(-m))
    torch.testing.assert_close(dual_value_loss(x, "reverse_kl", a, max_clip=5.0), expected)
    with pytest.raises(ValueError, match="valid: chi_square, total_variation, reverse_kl"):
        dual_value_loss(x, "hellinger", a)


@pytest.mark.parametrize("alpha", [0.6, 0.8])
def test_total_variation_optimum_is_the_quantile_with_p_q_above_v(alpha):
    q = torch.randn(4000, generator=torch.Generator().manual_seed(1))
    v = minimise(lambda v: dual_value_loss((q - v)[None], "total_variation", alpha).mean())
    assert abs(float((q > v).float().mean()) - (1 - alpha) / alpha) < 0.01


def test_reverse_kl_optimum_is_the_soft_maximum():
    """XQL's Gumbel loss is minimised at V = alpha log E exp(Q / alpha) (no clipping active)."""
    q = torch.randn(2000, generator=torch.Generator().manual_seed(2)) * 0.5
    alpha = 1.0
    v = minimise(lambda v: dual_value_loss((q - v)[None], "reverse_kl", alpha, 50.0).mean())
    expected = alpha * torch.logsumexp(q / alpha, 0) - alpha * torch.log(torch.tensor(len(q) * 1.0))
    assert abs(float(v - expected)) < 0.01


def test_chi_square_optimum_satisfies_its_stationarity_condition():
    """d/dV of alpha max(x + x^2/4, 0) - (1-alpha) x:  alpha E[(1 + x/2) 1(x + x^2/4 > 0)] = 1 - alpha."""
    q = torch.randn(3000, generator=torch.Generator().manual_seed(3))
    alpha = 0.6
    v = minimise(lambda v: dual_value_loss((q - v)[None], "chi_square", alpha).mean())
    x = q - v
    lhs = alpha * ((1 + x / 2) * ((x + x ** 2 / 4) > 0)).mean()
    assert abs(float(lhs) - (1 - alpha)) < 0.01


def test_expectile_loss_and_its_optimum():
    u = torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(expectile_loss(u, 0.7), torch.tensor([0.3 * 4, 0.0, 0.7 * 9]))
    q = torch.randn(3000, generator=torch.Generator().manual_seed(4))
    v = minimise(lambda v: expectile_loss(q - v, 0.7).mean())
    balance = 0.7 * (q - v).clamp_min(0).mean() - 0.3 * (v - q).clamp_min(0).mean()
    assert abs(float(balance)) < 1e-3 and float(v) > float(q.mean())


def test_awr_weight_and_cosine_scale():
    torch.testing.assert_close(awr_weight(torch.tensor([0.0, 1.0, 10.0]), 3.0),
                               torch.tensor([1.0, float(torch.exp(torch.tensor(3.0))), 100.0]))
    steps = torch.tensor([0.0, 50.0, 100.0, 200.0])
    torch.testing.assert_close(cosine_scale(steps, 100), torch.tensor([1.0, 0.5, 0.0, 0.0]))


def test_lr_scale_takes_adams_step_at_the_scaled_learning_rate():
    """apply_gradients(..., lr_scale=s) at lr equals Adam at lr s (three steps, weight decay on,
    s changing each step as a schedule's would): Adam's step is linear in lr."""
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=g), torch.randn(3, generator=g)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(3)]
    scaled = [p.clone().requires_grad_() for p in start]
    plain = [p.clone().requires_grad_() for p in start]
    scaled_opt = torch.optim.Adam(scaled, lr=1e-2, weight_decay=1e-3)
    plain_opt = torch.optim.Adam(plain, lr=1e-2, weight_decay=1e-3)
    for step, scale in enumerate([1.0, 0.5, 0.1]):
        apply_gradients(scaled, grads[step], scaled_opt, torch.tensor(scale))
        plain_opt.param_groups[0]["lr"] = 1e-2 * scale
        apply_gradients(plain, grads[step], plain_opt)
        for p, q in zip(scaled, plain):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert not torch.equal(scaled[0], start[0])


def test_effective_batch_share_is_kish_ess_over_the_batch_per_seed():
    weight = torch.tensor([[2.0, 2.0, 2.0, 2.0],      # any constant weight: plain BC, share 1
                           [5.0, 0.0, 0.0, 0.0],      # one transition carries the loss: 1/4
                           [1.0, 1.0, 0.0, 0.0]])     # half the batch: 1/2
    torch.testing.assert_close(effective_batch_share(weight), torch.tensor([1.0, 0.25, 0.5]))
    assert effective_batch_share(torch.zeros(1, 8)).item() == 0.0   # no weight at all: nothing


@pytest.mark.parametrize("name", ["iql", "fdvl", "odice"])
def test_weighted_bc_agents_report_the_share_of_the_batch_they_clone(name):
    from rlcore.training.buffer import Buffer
    torch.manual_seed(0)
    agent = make(name, "agent.batch_size=64")
    metrics = agent.update(agent.sample(Buffer.from_dataset(bandit_dataset()), 64))
    share = metrics["weight_ess"]
    assert share.shape == (1,) and 0.0 <= float(share) <= 1.0


def test_td3bc_actor_loss_is_normalised_q_plus_bc():
    agent = make("td3bc")
    b = batch(16)
    s, a = b["observations"], b["actions"]
    with torch.no_grad():
        pi = agent.actor(s)
        q = agent.critic(torch.cat([s, pi], -1))[:, 0]
        lam = 2.5 / q.abs().mean()
        expected = -lam * q.mean() + (pi - a).pow(2).mean()
    torch.testing.assert_close(agent.update_actor(s, a)["actor_loss"], expected[None])


def test_td3bc_updates_the_actor_every_second_step_and_resumes_the_phase():
    agent = make("td3bc")
    assert "actor_loss" not in agent.update(batch())
    assert "actor_loss" in agent.update(batch())
    agent.update(batch())
    other = make("td3bc")
    other.load_state_dict(agent.state_dict())
    assert "actor_loss" in other.update(batch())   # the 4th update, also after a reload


def test_a2pr_picks_the_higher_advantage_action_and_masks_by_v():
    agent = make("a2pr", "agent.mask=0.4")
    a = torch.tensor([[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]])
    a_gen = torch.tensor([[[0.9, 0.9], [0.8, 0.8], [0.7, 0.7]]])
    v = torch.tensor([[1.0, 1.0, 1.0]])
    q_data = torch.tensor([[2.0, 0.5, 0.0]])   # A_data = 1, -0.5, -1
    q_gen = torch.tensor([[1.5, 0.5, 1.0]])    # A_gen = 0.5, -0.5 (tie: the generated one), 0
    target, mask = agent.bc_target(a, a_gen, v, q_data, q_gen)
    torch.testing.assert_close(target, torch.tensor([[[0.1, 0.1], [0.8, 0.8], [0.7, 0.7]]]))
    # M = mask (1[Q_gen >= V] OR 1[Q_data > V]): the authors' bool + bool, never 2 mask
    torch.testing.assert_close(mask[..., 0], torch.tensor([[0.4, 0.0, 0.4]]))


def test_fdvl_value_batch_adds_uniform_actions_per_state():
    agent = make("fdvl", "agent.random_actions=2")
    b = batch(8)
    s, a = agent.value_batch(b)
    assert s.shape == (1, 24, 4) and a.shape == (1, 24, 2)
    torch.testing.assert_close(s[:, 8:16], b["observations"])
    torch.testing.assert_close(a[:, :8], b["actions"])
    assert a.abs().max() <= 1


# ---- the seeds contract, for every offline agent ---------------------------------------------
@pytest.mark.parametrize("name", OFFLINE)
def test_two_stacked_seeds_update_as_two_separate_agents(name, monkeypatch):
    noise_free = {"td3bc": ["agent.policy_noise=0"], "fdvl": ["agent.random_actions=0"]}
    if name == "a2pr":   # its VAE draws latent noise; the same noise for both sides of the check
        monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    torch.manual_seed(0)
    singles = [make(name, *noise_free.get(name, [])) for _ in range(2)]
    stacked = AGENTS.get(name)(replace(singles[0].spec, seeds=2), singles[0].cfg)
    for k, one in enumerate(singles):
        copy_seed_into(stacked, one, k)
    for step in range(4):
        b = batch(32, seed=step, seeds=2)
        got = stacked.update(b)
        want = [one.update(b[k:k + 1]) for k, one in enumerate(singles)]
        assert set(got) == set(want[0])
        for key in got:
            torch.testing.assert_close(got[key], torch.cat([w[key] for w in want]),
                                       rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
    if "projection_coef" in got:        # O-DICE's c is a per-seed dot product over parameters
        assert float(got["projection_coef"][0]) != float(got["projection_coef"][1])
    restacked = AGENTS.get(name)(replace(singles[0].spec, seeds=2), singles[0].cfg)
    for k, one in enumerate(singles):
        copy_seed_into(restacked, one, k)   # the singles' state, stacked again, is the stacked state
    for (key, a), b in zip(stacked.named_parameters(), restacked.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
    obs = torch.randn(2, 5, 4)
    torch.testing.assert_close(stacked.act(obs),
                               torch.cat([one.act(obs[k:k + 1]) for k, one in enumerate(singles)]))


# ---- learning: the one-step bandit ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name,expect_rewarded", [("bc", False), ("td3bc", True), ("iql", True),
                                                  ("fdvl", True), ("a2pr", True), ("odice", True)])
def test_bandit_value_based_agents_pick_the_rewarded_action(name, expect_rewarded):
    """The bandit of tests/conftest.py: cloning answers the mean action 0; each value-based
    agent should move toward the rewarded +0.5 (O-DICE: its ReLU(r - V) weights keep only the
    rewarded half)."""
    from rlcore.training.buffer import Buffer
    lr = {"bc": ["agent.lr=1e-3"], "td3bc": ["agent.actor_lr=1e-3", "agent.critic_lr=1e-3"],
          "iql": ["agent.actor_lr=1e-3", "agent.critic_lr=1e-3", "agent.value_lr=1e-3",
                  "agent.lr_decay_steps=0"],
          "a2pr": ["agent.actor_lr=1e-3", "agent.critic_lr=1e-3", "agent.value_lr=1e-3"],
          "odice": ["agent.value_lr=1e-3", "agent.policy_lr=1e-3"],
          "fdvl": ["agent.actor_lr=1e-3", "agent.critic_lr=1e-3", "agent.value_lr=1e-3",
                   "agent.lr_decay_steps=0", "agent.batch_size=256"]}[name]
    torch.manual_seed(0)
    agent = make(name, *lr)
    buffer = Buffer.from_dataset(bandit_dataset())
    for _ in range(600):
        agent.update(agent.sample(buffer, 256))
    mean_action = float(agent.act(torch.randn(1, 512, 4)).mean())
    if expect_rewarded:
        assert mean_action > 0.3, mean_action
    else:
        assert abs(mean_action) < 0.1, mean_action


# ---- imitation: expert + suboptimal mixes, ReCOIL ----------------------------------------------
def offset_episodes(name, lengths, obs_value):
    """Episodes of the given lengths whose observations start at obs_value (tells sources apart)."""
    from rlcore.data import from_arrays
    import numpy as np
    n = sum(lengths)
    ends = np.cumsum(lengths) - 1
    timeouts = np.zeros(n, dtype=bool)
    timeouts[ends] = True
    obs = np.full((n, 4), obs_value, dtype=np.float32) + np.arange(n, dtype=np.float32)[:, None]
    return from_arrays(name, {"observations": obs, "next_observations": obs + 1,
                              "actions": np.zeros((n, 2), np.float32), "rewards": np.ones(n, np.float32),
                              "terminals": np.zeros(n, bool), "timeouts": timeouts})


def test_expert_mix_takes_whole_expert_episodes_after_the_suboptimal_data():
    from rlcore.data import DatasetError
    from rlcore.data.imitation import expert_mix
    expert = offset_episodes("e", [3, 4, 5], 100.0)
    sub = offset_episodes("s", [6, 6], -100.0)
    mix, mask = expert_mix(expert, 2, first=1, suboptimal=sub)
    assert len(mix) == 12 + 9 and mask.sum() == 9 and not mask[:12].any()
    assert mix.observations[12, 0] == 100.0 + 3            # expert episode 1 starts at index 3
    assert mix.timeouts[12 + 3] and mix.timeouts[-1]       # both episodes end where they did
    with pytest.raises(DatasetError, match="has 3 complete episodes"):
        expert_mix(expert, 2, first=2)
    with pytest.raises(DatasetError, match="same env"):
        expert_mix(expert, 1, suboptimal=offset_episodes("x", [5], 0.0).__class__(
            **{**vars(offset_episodes("x", [5], 0.0)),
               "observations": torch.zeros(5, 7).numpy(), "next_observations": torch.zeros(5, 7).numpy()}))


def test_buffer_samples_its_expert_subset_only():
    from rlcore.training.buffer import Buffer
    from rlcore.data.imitation import expert_mix
    mix, mask = expert_mix(offset_episodes("e", [3, 4], 100.0), 1, suboptimal=offset_episodes("s", [8], -100.0))
    buffer = Buffer.from_dataset(mix, subsets={"expert": mask.nonzero()[0]})
    assert (buffer.sample(500, subset="expert")["observations"][:, 0] >= 100).all()
    with pytest.raises(KeyError, match="no 'demo' subset"):
        buffer.sample(4, subset="demo")


def test_recoil_critic_loss_is_the_bounded_two_half_objective():
    agent = make("recoil", "agent.lr_decay_steps=0")
    b = batch(16)                      # 8 mixture + 8 expert rows
    s, a = b["observations"][0], b["actions"][0]
    with torch.no_grad():
        critic_before = [p.clone() for p in agent.critic.parameters()]
        q = agent.critic(torch.cat([s, a], -1)[None])[0]   # [2, 16] (before any step)
    metrics = agent.update(b)
    with torch.no_grad():   # V after its step, as the critic saw it
        v_next = agent.value(b["next_observations"][:, :8])[0]
        d = b["terminals"][0, :8]
        y = -2 + 0.99 * (1 - d) * v_next + 0.99 * d * -200
        expected = sum(0.5 * ((qk[8:] - 200) ** 2).mean() + 0.5 * ((qk[:8] - y) ** 2).mean() for qk in q)
    torch.testing.assert_close(metrics["critic_loss"], expected[None], rtol=1e-5, atol=1e-4)
    assert any(not torch.equal(p, c) for p, c in zip(agent.critic.parameters(), critic_before))


def test_imitation_agents_train_from_the_cli_on_their_data_and_refuse_or_warn_on_the_wrong_data(capsys, tmp_path):
    """ReCOIL learns from a mix; O-DICE-IL from the expert episodes alone (main_odice_il.py) and
    warns on a mix, where with rewards removed nothing marks the expert."""
    import warnings
    from rlcore.cli import main
    tiny = ["data.transitions=3000", "env.dataset=hopper-pd-noisy", "trainer.eval_episodes=2", "trainer.progress=false",
            "trainer.steps=20", "trainer.eval_every=20", "trainer.compile=eager"]
    mix = ["env.expert_episodes=2", "env.suboptimal=hopper-random"]
    assert main(["train", "agent=recoil", *SMALL["recoil"], *tiny, *mix, f"run_dir={tmp_path / 'recoil'}"]) == 0
    assert "hopper-pd-noisy-2ep+hopper-random" in capsys.readouterr().out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "agent=odice_il", *SMALL["odice"], *tiny, "env.expert_episodes=2",
                     f"run_dir={tmp_path / 'odice_il'}"]) == 0
    assert not [w for w in caught if "expert apart" in str(w.message)]
    with pytest.warns(UserWarning, match="nothing tells the expert apart"):
        assert main(["train", "agent=odice_il", *SMALL["odice"], *tiny, *mix, f"run_dir={tmp_path / 'mix'}"]) == 0
    assert main(["train", "agent=recoil", *SMALL["recoil"], *tiny, f"run_dir={tmp_path / 'x'}"]) == 2
    assert "env.expert_episodes" in capsys.readouterr().err

"""Cross-task preference transfer (PEARL's CPA) and robust reward learning: the coupling and the
labels on a case with a known answer, the normalisation, RRL's loss by hand, bad input, and a
PEARL run end to end on Meta-World."""
import json

import numpy as np
import pytest
import torch

from rlcore.config import load_config
from rlcore.errors import ConfigError
from rlcore.data.preferences import Labelling, make_preferences, preference_label
from rlcore.data.transfer import (Transfer, distance_matrix, gw_coupling, label_accuracy, source_labels,
                             transfer_preferences, transport_columns, transported_labels)
from tests.conftest import episodes_dataset

pytest.importorskip("ot")


def permuted_sets(m=24, seed=0):
    rng = np.random.default_rng(seed)
    source = torch.as_tensor(rng.normal(size=(m, 6)))
    perm = rng.permutation(m)                       # target j is source perm[j]
    return source, source[perm], perm, rng


def test_the_coupling_recovers_a_permutation_and_the_labels_transfer_exactly():
    source, target, perm, rng = permuted_sets()
    coupling, discrepancy = gw_coupling(distance_matrix(source), distance_matrix(target))
    assert np.array_equal(coupling.argmax(0), perm) and discrepancy < 1e-12
    assert np.allclose(coupling.sum(0), 1 / 24) and np.allclose(coupling.sum(1), 1 / 24)
    # dense source labels from scores; the target's true labels are the same under perm
    scores = rng.normal(size=24)
    z, mask = (torch.as_tensor(a) for a in source_labels(
        __import__("rlcore.data.preferences", fromlist=["Preferences"]).Preferences(
            np.arange(24), scores, 4), np.arange(24), 0.0, rng))
    q, _ = transport_columns(source, target, Transfer("toy", block=24), rng, progress=False)
    labels, covered = transported_labels(torch.as_tensor(q), torch.as_tensor(q), z, mask, every_pair=True)
    truth = preference_label(scores[perm][:, None], scores[perm][None, :])
    off = ~np.eye(24, dtype=bool)
    assert covered[off].all()
    # exact, not shrunk: unnormalised, A^{jk} = T_ij T_lk would give labels of size 1/24^2
    assert np.allclose(labels.numpy()[off], truth[off]) and labels.max() == 1.0


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")   # POT's inner loop, at eps 5e-3
def test_the_entropic_coupling_also_finds_the_permutation():
    source, target, perm, _ = permuted_sets(m=12, seed=2)
    coupling, _ = gw_coupling(distance_matrix(source), distance_matrix(target), "entropic", 5e-3)
    assert np.array_equal(coupling.argmax(0), perm) and coupling.max(0).min() > 0.9 / 12


def test_normalised_labels_stay_in_0_1_and_a_uniform_coupling_averages_the_labelled_pairs():
    rng = np.random.default_rng(1)
    z = torch.as_tensor(rng.choice([0.0, 0.5, 1.0], size=(6, 6)))
    mask = torch.as_tensor((rng.random((6, 6)) < 0.4).astype(float))
    uniform = torch.full((5, 6), 1 / 6, dtype=torch.float64)
    labels, covered = transported_labels(uniform, uniform, z, mask)
    expected = (z * mask).sum() / mask.sum()        # every A^{jk}_{il} equal on labelled pairs
    assert covered.all() and torch.allclose(labels, expected.expand(5))
    spread = torch.as_tensor(rng.dirichlet(np.ones(6), size=40))
    labels, covered = transported_labels(spread, spread.flip(0), z, mask)
    assert covered.all() and 0 <= labels.min() and labels.max() <= 1
    # with no labelled source pair under the coupling: no information, 0.5, and said so
    one_hot = torch.eye(6)[[0, 1]]
    labels, covered = transported_labels(one_hot[:1], one_hot[1:], z, torch.zeros(6, 6))
    assert labels.item() == 0.5 and not covered.item()


def test_sparse_source_labels_cover_only_their_pairs_in_both_orientations():
    prefs = make_preferences(episodes_dataset([40, 40], seed=3),
                             Labelling(labels="sparse", labeller="return", pairs=6, segment_length=4),
                             progress=False)
    subset = np.sort(np.concatenate([prefs.first[:3], prefs.second[:3]]))
    z, mask = source_labels(prefs, subset, 0.0, np.random.default_rng(0))
    assert mask.sum() == 6 and np.array_equal(mask, mask.T)
    where = {s: i for i, s in enumerate(subset)}
    for a, b, y in zip(prefs.first[:3], prefs.second[:3], prefs.labels[:3]):
        assert z[where[a], where[b]] == y and z[where[b], where[a]] == 1 - y


def test_dense_source_noise_flips_that_fraction_of_pairs_symmetrically():
    from rlcore.data.preferences import Preferences
    scores = np.arange(200.0)
    z, _ = source_labels(Preferences(np.arange(200), scores, 4), np.arange(200), 0.2,
                         np.random.default_rng(0))
    clean = preference_label(scores[:, None], scores[None, :])
    flipped = (z != clean)[np.triu_indices(200, 1)]
    assert abs(flipped.mean() - 0.2) < 0.01 and np.allclose(z + z.T, 1.0)


def test_label_accuracy_skips_ties_and_counts_undecided_labels_half():
    assert label_accuracy(np.array([0.9, 0.2, 0.5, 0.7]), np.array([1.0, 1.0, 1.0, 0.5])) == 0.5


def test_the_gaussian_reward_loss_matches_the_hand_computation():
    from rlcore.agents.pearl import rrl_loss
    mu = torch.tensor([[[[0.5, -0.25], [1.0, 0.0]]]])             # [S=1, B=1, 2, L=2]
    sigma = torch.tensor([[[[0.1, 0.2], [0.1, 0.4]]]])
    eps = torch.tensor([[[[1.0, -1.0], [0.5, 2.0]]]])
    labels = torch.tensor([[0.75]])
    loss, metrics = rrl_loss(mu, sigma, eps, labels, sigma_0=0.2, sigma_weight=0.5)
    first = 0.5 + 0.1 - 0.25 - 0.2                                  # sum of mu + sigma * eps
    second = 1.0 + 0.05 + 0.0 + 0.8
    logit = second - first
    bt = -(0.75 * np.log(1 / (1 + np.exp(-logit))) + 0.25 * np.log(1 / (1 + np.exp(logit))))
    kl = np.mean([np.log(0.2 / s) + s ** 2 / (2 * 0.04) - 0.5 for s in (0.1, 0.2, 0.1, 0.4)])
    assert loss.item() == pytest.approx(bt + 0.5 * kl, rel=1e-6)
    assert metrics["sigma_kl"].item() == pytest.approx(kl, rel=1e-6)
    assert metrics["reward_accuracy"].item() == 1.0
    # the KL vanishes at sigma_0; under a hard label the loss falls as the preferred segment's
    # reward rises (a soft 0.75 is already past its optimum logit, log 3)
    zero = rrl_loss(mu, torch.full_like(sigma, 0.2), eps, labels, 0.2, 1.0)[1]["sigma_kl"]
    assert zero.item() == pytest.approx(0.0, abs=1e-7)
    higher = mu.clone()
    higher[..., 1, :] += 1.0
    hard = torch.ones_like(labels)
    assert rrl_loss(higher, sigma, eps, hard, 0.2, 0.5)[0] < rrl_loss(mu, sigma, eps, hard, 0.2, 0.5)[0]


def test_pearl_fits_its_gaussian_reward_and_gives_iql_the_mean():
    from rlcore.agents.pearl import PEARL
    from tests.conftest import agent_and_buffer
    agent, buffer = agent_and_buffer("pearl", torch.device("cpu"), transitions=400,
                                     overrides=["agent.reward_steps=3", "agent.hidden=[16,16]"])
    assert isinstance(agent, PEARL)
    batch = agent.sample(buffer, 8)
    mu, sigma = agent.gaussian(batch)
    assert torch.equal(agent.reward(batch), mu) and (sigma > 0).all()
    networks = (agent.reward_model, agent.sigma_model)
    before = [[p.detach().clone() for p in net.parameters()] for net in networks]
    metrics = agent.update(batch)
    assert {"reward_loss", "sigma_kl", "reward_sigma", "reward_accuracy", "critic_loss"} <= set(metrics)
    for old, net in zip(before, networks):           # both trained (mu's last bias has an
        changed = [not torch.equal(a, b) for a, b in zip(old, net.parameters())]
        assert sum(changed) >= len(changed) - 1     # exactly zero Bradley-Terry gradient)


def test_transfer_refuses_tasks_with_different_action_spaces_and_bad_settings():
    target = episodes_dataset([30, 30], seed=0)
    source = episodes_dataset([30, 30], seed=1, action_dim=target.action_dim + 1)
    how = Labelling(labels="dense", labeller="return", segments=10, segment_length=4)
    tp, sp = (make_preferences(d, how, progress=False) for d in (target, source))
    with pytest.raises(ConfigError, match=r"actions have 3 dimensions and the target's 2; "
                                          r"preferences transfer between tasks that share an action"):
        transfer_preferences(target, tp, source, sp, 0.0, Transfer("toy"), progress=False)
    with pytest.raises(ConfigError, match=r"env.transfer_solver='sinkhorn'; valid: exact, entropic"):
        Transfer("toy", solver="sinkhorn")
    with pytest.raises(ConfigError, match=r"env.source='hopper' is not an env with preference "
                                          r"labels; valid: metaworld-"):
        load_and_check(["agent=pearl", "env=metaworld-drawer-open", "env.source=hopper"])
    with pytest.raises(ConfigError, match=r"agent=iql does not learn from them; use one of"):
        load_and_check(["agent=iql", "env=metaworld-drawer-open",
                        "env.source=metaworld-button-press-topdown"])


def load_and_check(overrides):
    from rlcore.training.trainer import learns_from_preferences
    return learns_from_preferences(load_config(overrides))


def test_a_task_transferred_to_itself_gets_its_own_labels_back():
    data = episodes_dataset([60, 60, 60], seed=4)
    how = Labelling(labels="dense", labeller="return", segments=60, segment_length=6)
    prefs = make_preferences(data, how, progress=False)
    out = transfer_preferences(data, prefs, data, prefs, 0.0, Transfer("toy", block=60), progress=False)
    meta = out.prefs.metadata["transfer"]
    assert out.prefs.matrix.shape == (60, 60) and np.all(np.diag(out.prefs.matrix) == 0.5)
    assert np.isnan(out.prefs.scores).all()        # the target's true scores never reach an agent
    assert meta["blocks"] == 1 and meta["covered"] == 1.0 and meta["accuracy"] == 1.0
    # in blocks of 30, each against one source subsample of 30: two target segments of two blocks
    # may take the same source segment, and their pair gets 0.5 (uncovered)
    out = transfer_preferences(data, prefs, data, prefs, 0.0, Transfer("toy", block=30), progress=False)
    meta = out.prefs.metadata["transfer"]
    assert meta["blocks"] == 2 and meta["source_segments"] == 30 and 0.9 < meta["covered"] < 1.0
    assert out.q.shape == (60, 30) and np.allclose(out.q.sum(1), 1.0)


@pytest.mark.slow
def test_pearl_on_metaworld_transfers_labels_and_trains(tmp_path):
    pytest.importorskip("metaworld")
    from tests.test_preferences import metaworld_run
    results = metaworld_run(tmp_path, "pearl", 4, "agent=pearl", "agent.reward_steps=2",
                            "env.source=metaworld-button-press-topdown", "env.transfer_block=20")
    transfer = json.loads((tmp_path / "pearl" / "transfer.json").read_text())
    assert transfer["source"] == "metaworld-button-press-topdown" and transfer["blocks"] == 2
    assert 0.0 <= transfer["accuracy"] <= 1.0 and transfer["covered"] > 0.9
    assert len(results) == 2 and all(0 <= r.last_score <= 100 for r in results)

"""Goal-conditioned runs: where sampled goals come from, the stitching augmentation, SMORe's
loss, OGBench data made here and read from files, the task evaluation, and bad input."""
import numpy as np
import pytest
import torch

from rlcore.training.buffer import Buffer
from rlcore.config import load_config
from rlcore.data import DatasetError, from_arrays
from rlcore.errors import ConfigError
from rlcore.data.goals import GoalMix, GoalSampler
from tests.conftest import agent_and_buffer, episodes_dataset

pytest.importorskip("ogbench")
pytest.importorskip("sklearn")

LENGTHS = [5, 40, 13, 60, 1, 30]
TRAJECTORY, CURRENT, RANDOM = GoalMix(0, 1, 0), GoalMix(1, 0, 0), GoalMix(0, 0, 1)


def sampler(lengths=LENGTHS, discount=0.99, **kwargs):
    """A sampler over episodes whose observation[:, 0] is the row index, [:, 1] the episode."""
    buffer = Buffer.from_dataset(episodes_dataset(lengths), seed=1)
    return GoalSampler(buffer, discount, **kwargs), np.cumsum(lengths) - 1


def index_and_episode(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return x[:, 0].numpy().astype(int), x[:, 1].numpy().astype(int)


@pytest.mark.parametrize("geometric", [False, True])
def test_trajectory_goals_are_later_states_of_the_same_episode(geometric):
    s, last = sampler()
    batch = s.sample(20_000, GoalMix(0, 1, 0, geometric), TRAJECTORY)
    t, episode = index_and_episode(batch["observations"])
    g, goal_episode = index_and_episode(batch["value_goals"])
    assert (goal_episode == episode).all()
    final = last[episode]
    assert ((g > t) | ((g == t) & (t == final))).all()       # t itself only at the episode's end
    assert (g <= final).all()
    success = g == t
    assert np.array_equal(batch["rewards"].numpy(), success - 1.0)   # 0 if s == g else -1
    assert np.array_equal(batch["masks"].numpy(), 1.0 - success)
    if not geometric:                                           # uniform over the whole future
        rows = t == last[2] + 1                                 # the first row of the 60-step episode
        assert len(np.unique(g[rows])) > 40


def test_geometric_offsets_have_the_discount_s_mean():
    s, last = sampler(lengths=[2000], discount=0.8)
    batch = s.sample(20_000, GoalMix(0, 1, 0, True), TRAJECTORY)
    t, _ = index_and_episode(batch["observations"])
    g, _ = index_and_episode(batch["value_goals"])
    far = t < 1900                                             # the cap at the end never binds
    assert abs((g - t)[far].mean() - 1 / (1 - 0.8)) < 0.1       # E[Geom(0.2)] = 5


def test_current_random_and_mixed_goals():
    s, _ = sampler()
    batch = s.sample(20_000, CURRENT, RANDOM)
    t, episode = index_and_episode(batch["observations"])
    assert np.array_equal(index_and_episode(batch["value_goals"])[0], t)
    assert (batch["rewards"] == 0).all() and (batch["masks"] == 0).all()
    _, actor_episode = index_and_episode(batch["actor_goals"])
    share = np.array(LENGTHS) / sum(LENGTHS)
    assert abs((actor_episode != episode).mean() - (1 - (share ** 2).sum())) < 0.02
    batch = s.sample(40_000, GoalMix(0.2, 0.5, 0.3, True), TRAJECTORY)
    t, episode = index_and_episode(batch["observations"])
    g, goal_episode = index_and_episode(batch["value_goals"])
    n, ends = sum(LENGTHS), len(LENGTHS) / sum(LENGTHS)        # a trajectory goal is t only at an end
    assert abs((g == t).mean() - (0.2 + 0.5 * ends + 0.3 / n)) < 0.01
    assert abs((goal_episode != episode).mean() - 0.3 * (1 - (share ** 2).sum())) < 0.01


def cells_dataset():
    """Three episodes through 2-d cells (states at cell centres + tiny noise): episode 0 visits
    cells 0, 1, 2; episode 1 cells 2, 3, 4; episode 2 cells 5, 6. Only cell 2 is shared."""
    rng = np.random.default_rng(0)
    cells = [[0, 1, 2], [2, 3, 4], [5, 6]]
    obs, cell_of, ends = [], [], np.zeros(0, bool)
    for path in cells:
        for c in path:
            for _ in range(10):
                obs.append([10.0 * c, 0.0] + rng.normal(0, 0.01, 2))
                cell_of.append(c)
        done = np.zeros(10 * len(path), bool)
        done[-1] = True
        ends = np.concatenate([ends, done])
    obs = np.asarray(obs, np.float32)
    n = len(obs)
    nxt = np.concatenate([obs[1:], obs[-1:]])
    data = from_arrays("cells", {"observations": obs, "next_observations": nxt,
                                 "actions": np.zeros((n, 2), np.float32),
                                 "rewards": np.zeros(n, np.float32),
                                 "terminals": np.zeros(n, bool), "timeouts": ends})
    episode = np.repeat(np.arange(3), [30, 30, 20])
    return data, np.asarray(cell_of), episode


def test_augmented_goals_come_from_a_trajectory_through_the_waypoint_s_cluster():
    data, cell, episode = cells_dataset()
    row_of = {tuple(x): i for i, x in enumerate(data.observations.tolist())}
    buffer = Buffer.from_dataset(data, seed=0)
    plain = GoalSampler(buffer, augment="none")
    stitched = GoalSampler(buffer, augment="temporal", augment_prob=1.0, clusters=7, seed=0)
    assert len(np.unique(stitched.clusters.labels.numpy())) == 7
    for s, may_cross in ((plain, False), (stitched, True)):
        batch = s.sample(5000, TRAJECTORY, TRAJECTORY)
        t = np.array([row_of[tuple(x)] for x in batch["observations"].tolist()])
        g = np.array([row_of[tuple(x)] for x in batch["actor_goals"].tolist()])
        crossed = episode[g] != episode[t]
        assert crossed.any() == may_cross
        # a goal on another trajectory lies on one that passes through a cell of t's own
        # future (here only cell 2 links episodes 0 and 1), at or after it passes there
        assert set(zip(episode[t][crossed], episode[g][crossed])) <= {(0, 1), (1, 0)} | (
            {(0, 0), (1, 1)})
        from_0_to_1 = crossed & (episode[t] == 0)
        assert (cell[g[from_0_to_1]] >= 2).all()               # reached from cell 2 onward
        assert not ((episode[t] == 2) & crossed).any()          # episode 2 shares no cell
    assert (episode[g] != episode[t])[episode[t] == 0].mean() > 0.05


def test_hierarchical_goals_follow_hgcdataset():
    s, last = sampler()
    batch = s.sample_hierarchical(20_000, GoalMix(0.2, 0.5, 0.3, True), GoalMix(0, 0.5, 0.5), 7)
    t, episode = index_and_episode(batch["observations"])
    final = last[episode]
    low, low_episode = index_and_episode(batch["low_actor_goals"])
    assert np.array_equal(low, np.minimum(t + 7, final)) and (low_episode == episode).all()
    target, target_episode = index_and_episode(batch["high_actor_targets"])
    assert (target_episode == episode).all() and (target >= t).all() and (target <= t + 7).all()
    assert (target <= np.minimum(t + 7, final)).all()
    high, high_episode = index_and_episode(batch["high_actor_goals"])
    ahead = (high_episode == episode) & (high >= t) & (high < np.minimum(t + 7, final))
    assert np.isin(target[ahead] - high[ahead], [0]).mean() > 0.4     # capped at the high goal
    assert ((target[ahead] == high[ahead]) | (target[ahead] == np.minimum(t + 7, final)[ahead])).all()
    share = np.array(LENGTHS) / sum(LENGTHS)
    assert abs((high_episode != episode).mean() - 0.5 * (1 - (share ** 2).sum())) < 0.02


def test_smore_batches_are_mixture_then_goal_transitions():
    agent, buffer = agent_and_buffer("smore", torch.device("cpu"), seeds=2)
    batch = agent.sample(buffer, 16)
    assert batch.shape == (2, 32)
    gt = batch[:, 16:]
    assert torch.equal(gt["value_goals"], gt["next_observations"])   # the state each one enters


def test_smore_score_loss_against_hand_computation():
    from rlcore.agents.smore import smore_score_loss
    s_mix = torch.tensor([[[1.0, 2.0], [0.0, -1.0]]])           # [S=1, heads=2, B=2]
    s_gt = torch.tensor([[[3.0, 200.0], [199.0, 0.0]]])
    td = torch.tensor([[0.5, -1.0]])
    # stable: mean_gt (S - 200)^2 + (1 - g) 1e-4 mean_mix S^2 + 1/2 mean_mix (S - td)^2, per head
    head0 = (197 ** 2 + 0) / 2 + 1e-6 * (1 + 4) / 2 + 0.5 * (0.25 + 9) / 2
    head1 = (1 + 200 ** 2) / 2 + 1e-6 * (0 + 1) / 2 + 0.5 * (0.25 + 0) / 2
    stable = smore_score_loss(s_mix, s_gt, td, 0.99, "smore_stable")
    assert stable.shape == (1,) and stable.item() == pytest.approx(head0 + head1, rel=1e-7)
    # original: -mean_gt S + 1e-4 mean_mix S + 1/2 mean_mix (S - td)^2, per head
    head0 = -203 / 2 + 1e-4 * 3 / 2 + 0.5 * (0.25 + 9) / 2
    head1 = -199 / 2 + 1e-4 * -1 / 2 + 0.5 * (0.25 + 0) / 2
    assert smore_score_loss(s_mix, s_gt, td, 0.99, "smore").item() == pytest.approx(head0 + head1)


def test_a_generated_goal_dataset_round_trips_through_minari():
    from rlcore.data.datasets import load_dataset, locate
    first = load_dataset("pointmaze-medium-stitch", transitions=2000, progress=False)
    assert locate("pointmaze-medium-stitch", 2000)[1].exists()
    again = load_dataset("pointmaze-medium-stitch", transitions=2000, progress=False)
    assert len(first) == 2000 and first.obs_dim == 2 and first.action_dim == 2
    assert not first.terminals.any() and np.flatnonzero(first.timeouts).tolist() == \
        list(range(199, 2000, 200))                            # 10 episodes of 200 transitions
    inside = ~first.timeouts
    assert np.array_equal(first.next_observations[:-1][inside[:-1]],
                          first.observations[1:][inside[:-1]])
    for key, value in first.arrays().items():
        assert np.array_equal(value, getattr(again, key)), key
    assert np.abs(first.actions).max() <= 1.0


def test_an_ogbench_file_loads_as_ogbench_converts_it(tmp_path):
    from rlcore.data.datasets import load_dataset
    obs = np.arange(16, dtype=np.float32).reshape(8, 2)           # two episodes of 4 states
    path = tmp_path / "toy-v0.npz"
    np.savez(path, observations=obs, actions=np.ones((8, 3), np.float32),
             terminals=np.array([0, 0, 0, 1, 0, 0, 0, 1], bool))
    data = load_dataset(str(path))
    assert len(data) == 6 and data.action_dim == 3
    assert np.array_equal(data.observations, obs[[0, 1, 2, 4, 5, 6]])
    assert np.array_equal(data.next_observations, obs[[1, 2, 3, 5, 6, 7]])
    assert data.timeouts.tolist() == [False, False, True, False, False, True]
    np.savez(path, observations=obs, actions=np.ones((8, 3), np.float32))
    with pytest.raises(DatasetError, match=r"lacks \['terminals'\]"):
        load_dataset(str(path))


class OracleAgent:
    """Moves toward the maze's next BFS cell (OGBench's data oracle, without noise) along the
    corridor's centre line, so that it never catches on a wall's corner: success is reachable on
    every task (120 of 120 episodes over 6 evaluation seeds; heading straight for the next cell's
    centre stalled on a corner in 6 of 60, and in CI once on every episode of a task)."""
    multi_seed = False

    def __init__(self):
        from rlcore.envs.ogbench import make_env
        self.maze = make_env("pointmaze-medium-v0").unwrapped

    def act(self, obs, deterministic=True, goals=None):
        out = []
        for xy, goal in zip(obs.numpy(), goals.numpy()):
            subgoal, _ = self.maze.get_oracle_subgoal(xy, goal)
            centre = np.array(self.maze.ij_to_xy(self.maze.xy_to_ij(xy)))
            if np.allclose(subgoal, centre):                     # in the goal's cell
                d = goal - xy
            else:
                d = subgoal - xy
                across = int(abs(subgoal - centre)[0] > abs(subgoal - centre)[1])
                d[across] = centre[across] - xy[across]          # hold the centre line
            out.append(d / (np.linalg.norm(d) + 1e-6))
        return torch.as_tensor(np.asarray(out), dtype=torch.float32)


class StandStill(OracleAgent):
    def act(self, obs, deterministic=True, goals=None):
        return torch.zeros(len(obs), 2)


def test_the_task_evaluation_counts_successes_per_task():
    from rlcore.evaluation import GoalEvaluator
    evaluator = GoalEvaluator("pointmaze-medium-v0", 2, torch.device("cpu"), [1, 2, 3, 4, 5])
    try:
        oracle = evaluator(OracleAgent(), 0)[0]
        still = evaluator(StandStill(), 0)[0]
    finally:
        evaluator.close()
    rates = [oracle[f"success_task{k}"] for k in range(1, 6)]
    assert oracle["episodes"] == 10 and min(rates) > 0 and oracle["score_mean"] >= 80
    assert oracle["score_mean"] == pytest.approx(100 * np.mean(rates))
    # the env rewards 1 on the step it reaches the goal and ends there: return = success
    assert oracle["return_mean"] == pytest.approx(oracle["success_rate"])
    assert oracle["length_mean"] < 1000
    assert still["score_mean"] == 0.0 and still["length_mean"] == 1000


def test_an_unknown_task_id_is_a_clear_error():
    from rlcore.evaluation import GoalEvaluator
    with pytest.raises(ValueError, match=r"no evaluation task 6; its tasks are 1-5"):
        GoalEvaluator("pointmaze-medium-v0", 1, torch.device("cpu"), [1, 6])
    with pytest.raises(ValueError, match="no evaluation tasks"):
        GoalEvaluator("Hopper-v5", 1, torch.device("cpu"), [1])


@pytest.mark.parametrize("overrides, message", [
    (["agent=gcbc", "env=hopper"], r"agent=gcbc is goal-conditioned, but env=hopper .* no goals"),
    (["agent=iql", "env=pointmaze-medium"], r"env=pointmaze-medium is goal-conditioned .* use one of"),
    (["agent=iql", "env=hopper", "data.augment=temporal"], r"relabels goals"),
])
def test_agent_and_env_that_disagree_fail_before_any_folder_exists(tmp_path, overrides, message):
    from rlcore.training.trainer import train
    cfg = load_config([*overrides, f"runs_root={tmp_path / 'runs'}"])
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "runs").exists()


def test_bad_goal_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="sum to 1"):
        GoalMix(0.5, 0.5, 0.5)
    with pytest.raises(ConfigError, match=r"data.augment=.kmeans.: must be one of none, temporal"):
        load_config(["agent=gcbc", "env=pointmaze-medium", "data.augment=kmeans"])
    s, _ = sampler()
    with pytest.raises(ConfigError, match="clusters"):
        GoalSampler(s.buffer, augment="temporal", clusters=10_000)


@pytest.mark.slow
def test_gcbc_learns_to_reach_goals_on_navigate_data(tmp_path):
    """OGBench's navigate data, 100k transitions: 2,000 updates of GCBC reach goals of the
    evaluation tasks (20% for both seeds when measured; an untrained policy's is 0, as
    StandStill's above). Best of 4 evaluations of 8 episodes per task: with 2 evaluations of 4,
    one seed's best was 0% in one full-suite run."""
    from rlcore.training.trainer import train
    cfg = load_config(["agent=gcbc", "env=pointmaze-medium", "data.transitions=100000",
                       "trainer.steps=2000", "trainer.eval_every=500", "trainer.eval_episodes=8",
                       "agent.batch_size=256", "agent.actor_hidden=[128,128]", "seeds=2",
                       f"runs_root={tmp_path}", "trainer.progress=false"])
    results = train(cfg)
    assert np.mean([r.best_score for r in results]) >= 10.0


def test_contexts_are_windows_of_one_trajectory_or_stitched_through_a_shared_cluster():
    data, cell, episode = cells_dataset()
    row_of = {tuple(x): i for i, x in enumerate(data.observations.tolist())}
    buffer = Buffer.from_dataset(data, seed=0)
    last = {e: np.flatnonzero(episode == e).max() for e in range(3)}
    for augment in ("none", "temporal"):
        s = GoalSampler(buffer, augment=augment, augment_prob=1.0, clusters=7, seed=0)
        batch = s.sample_contexts(3000, context=5)
        rows = np.array([[row_of[tuple(x)] for x in window] for window in
                         batch["observations"].tolist()])                       # [n, 5]
        goal = np.array([row_of[tuple(x)] for x in batch["goals"].tolist()])
        assert np.array_equal(batch["actions"].numpy(), data.actions[rows])
        steps = np.diff(rows, axis=1)
        breaks = (steps != 1).sum(1)
        assert (breaks <= 1).all()                                 # at most one seam
        for r, g, b in zip(rows, goal, breaks):
            assert g <= last[episode[g]]
            if augment == "none":
                assert episode[g] == episode[r[0]] and g > r[-1]   # a later state of the window's
            if b:                                                  # stitched: t..j-1, then k..
                seam = int(np.flatnonzero(np.diff(r) != 1)[0]) + 1
                waypoint, k = r[seam - 1] + 1, r[seam]
                assert cell[waypoint] == cell[k]                   # k is in j's cluster
                assert (episode[r[:seam]] == episode[r[0]]).all()
                assert (episode[r[seam:]] == episode[k]).all()
                assert episode[g] == episode[k] and g > r[-1]      # the goal follows on k's
                if episode[k] != episode[r[0]]:
                    assert cell[k] == 2                            # the one shared cell
            if episode[g] != episode[r[0]]:                        # crossed only through cell 2
                assert {episode[g], episode[r[0]]} == {0, 1}
                assert cell[g] >= 2 if episode[g] == 1 else cell[g] == 2
        if augment == "none":
            assert breaks.sum() == 0
        else:
            assert breaks.mean() > 0.02                           # some windows are stitched
            assert (episode[goal] != episode[rows[:, 0]]).mean() > 0.05


def test_gcdt_acts_on_the_episode_so_far_up_to_its_context():
    agent, _ = agent_and_buffer("gcdt", torch.device("cpu"), seeds=2)
    agent.begin_episodes()
    obs, goal = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    first = agent.act(obs, goals=goal)
    assert first.shape == (2, 3, 3) and (first.abs() <= 1).all()
    for step in range(8):
        agent.act(torch.randn(2, 3, 11), goals=goal)
        assert len(agent.history["states"]) == min(step + 2, agent.cfg.context)
    agent.begin_episodes()                                     # a new episode forgets the old
    assert torch.allclose(agent.act(obs, goals=goal), first)


@pytest.mark.slow
def test_a_resumed_goal_conditioned_run_ends_as_an_uninterrupted_one(tmp_path):
    """GCDT with the augmentation: its warm-up counter, the K-means clusters (rebuilt from the
    data on resume) and the sampler's generator all come back."""
    from rlcore.training.checkpoint import latest_checkpoint, load_checkpoint
    from rlcore.config import apply_overrides
    from rlcore.training.trainer import train
    common = ["agent=gcdt", "env=pointmaze-medium", "env.dataset=pointmaze-medium-stitch",
              "data.transitions=2000", "data.augment=temporal", "data.clusters=8",
              "env.goal_tasks=1", "trainer.eval_episodes=1", "trainer.eval_every=30",
              "trainer.checkpoint_every=30", "trainer.log_every=10", "trainer.compile=eager",
              "agent.embed_dim=16", "agent.blocks=1", "agent.batch_size=16", "agent.dropout=0.0",
              "seeds=2", "trainer.progress=false"]
    train(load_config([*common, "trainer.steps=60", f"run_dir={tmp_path / 'full'}"]))
    train(load_config([*common, "trainer.steps=30", f"run_dir={tmp_path / 'cut'}"]))
    cfg = load_config([*common, "trainer.steps=30", f"run_dir={tmp_path / 'cut'}"])
    cfg = apply_overrides(cfg, ["trainer.steps=60"])
    cfg.resume = str(tmp_path / "cut")
    train(cfg)
    full, resumed = (load_checkpoint(latest_checkpoint(tmp_path / n)) for n in ("full", "cut"))
    assert full["step"] == resumed["step"] == 60
    for key, value in full["agent"]["modules"].items():
        assert torch.equal(value, resumed["agent"]["modules"][key]), key


def test_the_bench_times_a_goal_conditioned_agent_beside_a_host_loop(tmp_path, capsys):
    from rlcore.cli import main
    out = tmp_path / "bench.json"
    assert main(["bench", "agent=gcbc", "env=pointmaze-medium", "device=cpu", "bench.updates=3",
                 "bench.warmup=1", "bench.modes=[eager]", "bench.seeds=2", "bench.transitions=5000",
                 "agent.actor_hidden=[32,32]", f"bench.out={out}"]) == 0
    rows = __import__("json").loads(out.read_text())["rows"]
    assert [r["seeds"] for r in rows] == [1, 1, 2] and "host" in rows[0]["loop"]
    assert all(r["updates_per_s"] > 0 for r in rows)

"""D4RL-format datasets: round trips, bad input, generation, preprocessing, scores."""
import h5py
import numpy as np
import pytest

from rlcore.data import DatasetError, from_arrays, load_hdf5, save_hdf5
from rlcore.data.datasets import load_dataset
from rlcore.data.preprocess import ObsNormalizer, transform_rewards
from rlcore.evaluation.scores import d4rl_reference, reference_for
from tests.conftest import episodes_dataset


def d4rl_arrays(n=10):
    rng = np.random.default_rng(0)
    return {"observations": rng.standard_normal((n, 4)), "actions": rng.uniform(-1, 1, (n, 2)),
            "rewards": rng.standard_normal(n), "terminals": np.zeros(n, bool),
            "timeouts": np.zeros(n, bool), "next_observations": rng.standard_normal((n, 4))}


def write_raw(path, arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def test_hdf5_round_trip(tmp_path):
    ds = episodes_dataset([4, 7])
    loaded = load_hdf5(save_hdf5(ds, tmp_path / "x.hdf5"))
    for key, value in ds.arrays().items():
        np.testing.assert_array_equal(getattr(loaded, key), value)
    assert loaded.name == "toy"


def test_d4rl_file_without_metadata_loads(tmp_path):
    ds = load_hdf5(write_raw(tmp_path / "hopper_medium-v2.hdf5", d4rl_arrays()))
    assert len(ds) == 10 and ds.obs_dim == 4 and ds.name == "hopper_medium-v2"


@pytest.mark.parametrize("problem, message", [
    ("missing", "lacks keys \\['rewards'\\]"),
    ("lengths", "different lengths"),
    ("nan", "observations has 1 rows with NaN"),
    ("next_shape", "next_observations shape"),
])
def test_bad_files_get_errors_that_name_the_problem(tmp_path, problem, message):
    arrays = d4rl_arrays()
    if problem == "missing":
        del arrays["rewards"]
    elif problem == "lengths":
        arrays["actions"] = arrays["actions"][:7]
    elif problem == "nan":
        arrays["observations"][3, 1] = np.nan
    else:
        arrays["next_observations"] = arrays["next_observations"][:, :3]
    with pytest.raises(DatasetError, match=message):
        load_hdf5(write_raw(tmp_path / "bad.hdf5", arrays))


def test_truncated_file_is_rejected_not_half_loaded(tmp_path):
    path = save_hdf5(episodes_dataset([50, 50]), tmp_path / "x.hdf5")
    data = path.read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError):
        load_hdf5(cut)


def test_missing_file_and_unknown_name_errors_list_what_is_valid(tmp_path):
    with pytest.raises(DatasetError, match="no dataset file"):
        load_dataset(str(tmp_path / "nope.hdf5"))
    with pytest.raises(DatasetError, match="hopper-pd-noisy"):
        load_dataset("hopper-mediun")


def test_without_next_observations_timeout_steps_are_dropped_as_in_d4rl():
    arrays = d4rl_arrays(8)
    del arrays["next_observations"]
    arrays["timeouts"][3] = True        # episode 0 = steps 0..3 (3 cut by the time limit)
    arrays["terminals"][5] = True       # episode 1 = steps 4..5 (true end)
    ds = from_arrays("v0", arrays)
    # kept: 0,1,2 (2 becomes the timeout), 4,5, 6 (7 is unfinished last step: dropped)
    np.testing.assert_array_equal(ds.observations, arrays["observations"][[0, 1, 2, 4, 5, 6]].astype(np.float32))
    np.testing.assert_array_equal(ds.next_observations[:2], arrays["observations"][[1, 2]].astype(np.float32))
    np.testing.assert_array_equal(ds.timeouts, [False, False, True, False, False, True])
    np.testing.assert_array_equal(ds.terminals, [False, False, False, False, True, False])


def test_episode_returns_and_return_range_scaling():
    ds = episodes_dataset([3, 5, 4])
    starts = [0, 3, 8]
    expected = [ds.rewards[s:e].sum() for s, e in zip(starts, [3, 8, 12])]
    np.testing.assert_allclose(ds.episode_returns(), expected, rtol=1e-6)
    scaled = transform_rewards(ds, "return_range", max_episode_steps=1000)
    factor = 1000 / (max(expected) - min(expected))
    np.testing.assert_allclose(scaled.rewards, ds.rewards * factor, rtol=1e-5)
    antmaze = transform_rewards(ds, "odice_antmaze", 1000)
    np.testing.assert_array_equal(antmaze.rewards, np.where(ds.rewards == 0, -3.0, 0.0))
    with pytest.raises(ValueError, match="valid: none, return_range"):
        transform_rewards(ds, "divide_by_pi", 1000)


def test_returns_to_go_restart_at_every_episode_end():
    ds = episodes_dataset([3, 2])
    ds = from_arrays("rtg", {**ds.arrays(), "rewards": np.array([1.0, 2.0, 4.0, 8.0, 16.0])})
    g = 0.5
    np.testing.assert_allclose(ds.returns_to_go(g), [1 + g * 2 + g * g * 4, 2 + g * 4, 4,
                                                    8 + g * 16, 16])


def test_obs_normalizer_matches_d4rl_convention():
    ds = episodes_dataset([30])
    norm = ObsNormalizer(ds.obs_dim)
    norm.fit(ds.observations)
    out = norm.apply_numpy(ds)
    np.testing.assert_allclose(out.observations, (ds.observations - ds.observations.mean(0))
                               / (ds.observations.std(0) + 1e-3), rtol=1e-5, atol=1e-5)


def test_generated_dataset_is_deterministic_cached_and_keeps_timeouts_apart():
    a = load_dataset("hopper-pd-noisy", transitions=3000, seed=7, progress=False)
    b = load_dataset("hopper-pd-noisy", transitions=3000, seed=7, progress=False)  # from cache
    from rlcore.data.datasets import DATASETS
    c = DATASETS.get("hopper-pd-noisy").make(3000, seed=7, progress=False)         # made again
    d = DATASETS.get("hopper-pd-noisy").make(3000, seed=8, progress=False)
    assert len(a) == 3000
    for key in ("observations", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        np.testing.assert_array_equal(getattr(a, key), getattr(c, key))
    assert not np.array_equal(a.actions, d.actions)
    assert a.terminals.any() and a.timeouts[-1] and not (a.terminals & a.timeouts).any()
    # stored as a Minari dataset that Minari itself reads, with D4RL's hopper references
    import minari
    stored = minari.load_dataset("rlcore/hopper/pd-noisy-n3000-s7-v0")
    assert stored.total_steps == 3000
    assert stored.storage.metadata["ref_max_score"] == 3234.3
    from rlcore.evaluation.scores import reference_for
    assert reference_for("hopper", a.metadata).source == "D4RL hopper"
    # within an episode, s' of step t is s of step t+1
    inside = ~(a.terminals | a.timeouts)[:-1]
    np.testing.assert_allclose(a.next_observations[:-1][inside], a.observations[1:][inside])


def test_d4rl_scores_by_hand():
    hopper = d4rl_reference("hopper-medium-v2")
    np.testing.assert_allclose(hopper.normalize([3234.3, -20.272305, (3234.3 - 20.272305) / 2]),
                               [100.0, 0.0, 50.0])
    assert d4rl_reference("antmaze-umaze-v2").ref_max == 1.0           # not ant's
    assert d4rl_reference("ant-medium-v2").ref_min == -325.6
    np.testing.assert_allclose(d4rl_reference("maze2d-umaze-dense-v1").normalize([68.537689]), [0.0])
    np.testing.assert_allclose(d4rl_reference("walker2d").normalize([4592.3]), [100.0])
    with pytest.raises(KeyError, match="hopper"):
        d4rl_reference("cartpole-v1")


def test_dataset_metadata_references_take_precedence():
    ref = reference_for("hopper", {"ref_min_score": 10.0, "ref_max_score": 110.0})
    assert ref.source == "dataset metadata"
    np.testing.assert_allclose(ref.normalize([60.0]), [50.0])
    assert reference_for("hopper", {}).source == "D4RL hopper"


def test_hopper_default_dataset_is_made_from_the_shipped_medium_policy():
    """No network: the shipped SAC snapshot rolls out hopper-medium; it beats an untrained policy."""
    from rlcore.config import load_config
    cfg = load_config([])
    assert cfg.env.dataset == "hopper-medium"
    medium = load_dataset("hopper-medium", transitions=4000, seed=0, progress=False)
    random = load_dataset("hopper-random", transitions=4000, seed=0, progress=False)
    assert len(medium) == 4000 and medium.metadata["ref_max_score"] == 3234.3
    assert medium.episode_returns().mean() > 5 * random.episode_returns().mean()


def test_a_re_exported_policy_never_reuses_the_data_of_the_old_one(tmp_path, monkeypatch):
    """The cache id of a dataset rolled out from shipped policies carries their fingerprint."""
    import shutil
    import rlcore.envs.mujoco as recipes
    from rlcore.data.datasets import cached_generated, generated_id, locate
    policies = tmp_path / "policies"
    shutil.copytree(recipes.POLICY_DIR, policies)
    monkeypatch.setattr(recipes, "POLICY_DIR", policies)
    names = ("hopper-medium", "hopper-medium-expert", "hopper-medium-replay", "hopper-random")
    old = {name: generated_id(name, 4000, 0) for name in names}
    assert len(load_dataset("hopper-medium", transitions=4000, seed=0, progress=False)) == 4000
    assert locate("hopper-medium", 4000, 0)[1].exists()
    assert [p.name for p in cached_generated("hopper-medium")] == [old["hopper-medium"].split("/")[-1]]
    shutil.copy(policies / "halfcheetah-medium.pt", policies / "hopper-medium.pt")   # re-exported
    new = {name: generated_id(name, 4000, 0) for name in names}
    assert new["hopper-medium"].startswith("rlcore/hopper/medium-p")
    assert new["hopper-medium"].endswith("-n4000-s0-v0")
    assert new["hopper-medium"] != old["hopper-medium"]
    assert new["hopper-medium-expert"] != old["hopper-medium-expert"]   # half of it is medium
    assert new["hopper-medium-replay"] == old["hopper-medium-replay"]   # its own file, unchanged
    assert new["hopper-random"] == old["hopper-random"] == "rlcore/hopper/random-n4000-s0-v0"
    assert not locate("hopper-medium", 4000, 0)[1].exists()     # made afresh, not the old cache
    assert cached_generated("hopper-medium") == []              # `rlcore data list`: not made yet


def test_atomic_writes_leave_no_temp_file_and_ordinary_permissions(tmp_path):
    import os
    from rlcore.fileio import atomic_write_text
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "summary.json", "{}")
    finally:
        os.umask(umask)
    assert path.read_text() == "{}"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)      # not mkstemp's owner-only 0600
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]

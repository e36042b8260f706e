"""Remote dataset sources: D4RL hdf5 files by name or URL, and Minari datasets by id.

Downloads stream into a temporary file beside the cache entry, are checked against the
server's Content-Length and loaded once to validate keys and lengths, and only then renamed
into place: a download cut off mid-way never leaves a file that later loads as valid.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import warnings
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from rlcore.data import DatasetError, OfflineDataset, from_arrays, load_hdf5
from rlcore.fileio import atomic_write, file_lock
from rlcore.logger import progress_bar

D4RL_BASE_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl"
D4RL_LOCOMOTION = re.compile(
    r"^(halfcheetah|hopper|walker2d|ant)-(random|medium|expert|medium-replay|medium-expert|"
    r"full-replay)-v2$")


def d4rl_url(name: str) -> str | None:
    """D4RL's address for a gym-MuJoCo v2 dataset name, e.g. hopper-medium-replay-v2."""
    match = D4RL_LOCOMOTION.match(name)
    if not match:
        return None
    env, quality = match.groups()
    base = os.environ.get("RLCORE_D4RL_BASE_URL", D4RL_BASE_URL).rstrip("/")
    return f"{base}/gym_mujoco_v2/{env}_{quality.replace('-', '_')}-v2.hdf5"


def download(url: str, dest: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest` once (other processes wait on a lock), validated before rename."""
    with file_lock(dest.with_suffix(".lock")):
        if dest.exists():
            return dest

        def fetch(tmp: str) -> None:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError) as exc:
                raise DatasetError(
                    f"cannot download {url} ({getattr(exc, 'reason', exc)}); without a network, "
                    "pass a local copy (env.dataset=/path/to/file.hdf5) or a generated dataset "
                    "(rlcore data list)") from None
            expected = int(response.headers.get("Content-Length") or -1)
            written = 0
            with response, open(tmp, "wb") as out, progress_bar(
                    total=expected if expected > 0 else None, unit="B", unit_scale=True,
                    desc=f"downloading {dest.name}", disable=not progress) as bar:
                while True:
                    try:
                        chunk = response.read(1 << 20)
                    except (OSError, urllib.error.URLError) as exc:
                        raise DatasetError(f"download of {url} broke off after {written} bytes "
                                           f"({exc})") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            if expected >= 0 and written != expected:
                raise DatasetError(f"download of {url} cut off: {written} of {expected} bytes")
            load_hdf5(tmp)  # keys, lengths and NaNs checked before the file is kept

        atomic_write(dest, fetch)
    return dest


def minari_root() -> Path:
    """Minari's local folder: $MINARI_DATASETS_PATH, else ~/.minari/datasets."""
    return Path(os.environ.get("MINARI_DATASETS_PATH")
                or Path.home() / ".minari" / "datasets").expanduser()


@contextlib.contextmanager
def _minari_path(path: Path):
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def save_minari(dataset: OfflineDataset, dataset_id: str, env, ref_min: float, ref_max: float,
                description: str) -> Path:
    """Write `dataset` as a Minari dataset (readable by `minari show`), atomically: it is made
    under a hidden temporary root beside Minari's folder, then renamed into place."""
    import minari
    from minari.data_collector import EpisodeBuffer
    episodes, start = [], 0
    for end in dataset.episode_ends():
        obs = np.concatenate([dataset.observations[start:end], dataset.next_observations[end - 1:end]])
        truncations = dataset.timeouts[start:end].copy()
        truncations[-1] |= not dataset.terminals[end - 1]  # Minari needs every episode to end
        episodes.append(EpisodeBuffer(
            observations=list(obs), actions=list(dataset.actions[start:end]),
            rewards=list(dataset.rewards[start:end]),
            terminations=list(dataset.terminals[start:end]), truncations=list(truncations)))
        start = end
    root = minari_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=".rlcore-", dir=root))
    try:
        with _minari_path(tmp_root), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(author|code_permalink).*", category=UserWarning)
            minari.create_dataset_from_buffers(
                dataset_id, episodes, env=env, eval_env=env, ref_min_score=ref_min,
                ref_max_score=ref_max, algorithm_name="rlcore " + dataset.name, author="rlcore",
                description=description)
        final = root / dataset_id
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_root / dataset_id, final)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return final


def looks_like_minari_id(name: str) -> bool:
    """`mujoco/hopper/medium-v0`-style ids: slash-separated, ending in -v<N>, not a file."""
    return "/" in name and re.search(r"-v\d+$", name) is not None and not Path(name).exists()


def load_minari(dataset_id: str, download_missing: bool = True) -> OfflineDataset:
    """A Minari dataset (local, or downloaded when a network exists) as flat transitions."""
    import minari
    try:
        dataset = minari.load_dataset(dataset_id, download=download_missing)
    except Exception as exc:  # minari raises several types for unknown / unreachable ids
        raise DatasetError(f"cannot load Minari dataset {dataset_id!r}: {exc}") from None
    parts = {k: [] for k in ("observations", "next_observations", "actions", "rewards",
                             "terminals", "timeouts")}
    for episode in dataset.iterate_episodes():
        if isinstance(episode.observations, dict):
            raise DatasetError(f"Minari dataset {dataset_id!r} has dict observations "
                               "(goal-conditioned); rlcore reads flat observations here")
        parts["observations"].append(episode.observations[:-1])
        parts["next_observations"].append(episode.observations[1:])
        parts["actions"].append(episode.actions)
        parts["rewards"].append(episode.rewards)
        parts["terminals"].append(episode.terminations)
        parts["timeouts"].append(episode.truncations & ~episode.terminations)
    metadata = dict(dataset.storage.metadata)
    keep = {k: metadata.get(k) for k in ("ref_min_score", "ref_max_score", "env_spec",
                                         "algorithm_name") if metadata.get(k) is not None}
    return from_arrays(dataset_id, {k: np.concatenate(v) for k, v in parts.items()},
                       {"source": f"minari:{dataset_id}", **keep})


def load_ogbench_npz(path: str | Path, name: str | None = None) -> OfflineDataset:
    """An OGBench dataset file (observations, actions, terminals per step) as transitions, as
    `ogbench.load_dataset(compact_dataset=False)` converts it: `terminals` marks each episode's
    last observation, whose action has no next state and is dropped; s' = s_{t+1}. Episode ends
    become time limits here (OGBench's agents bootstrap through them: masks come from goals)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"no OGBench dataset file at {path}")
    try:
        with np.load(path) as file:
            missing = [k for k in ("observations", "actions", "terminals") if k not in file]
            if missing:
                raise DatasetError(f"{path} lacks {missing}; an OGBench file has observations, "
                                   "actions and terminals")
            obs = file["observations"].astype(np.float32)
            actions = file["actions"].astype(np.float32)
            ends = file["terminals"].astype(bool).reshape(-1)
    except (OSError, ValueError) as exc:     # truncated, or not a numpy archive
        raise DatasetError(f"{path} is not a readable .npz file ({exc})") from None
    if obs.ndim != 2:
        raise DatasetError(f"{path}: observations have shape {obs.shape}; rlcore reads state-based "
                           "OGBench data ([N, obs_dim]), not pixels")
    if len(ends) == 0 or not ends[-1]:
        raise DatasetError(f"{path}: the last step is not marked in terminals (an OGBench file "
                           "ends every episode with terminals = 1)")
    keep = ~ends
    next_keep = np.concatenate([[False], keep[:-1]])
    timeouts = np.concatenate([ends[1:], [True]])[keep]
    return from_arrays(name or path.stem, {
        "observations": obs[keep], "next_observations": obs[next_keep], "actions": actions[keep],
        "rewards": np.zeros(int(keep.sum()), np.float32), "terminals": np.zeros(int(keep.sum()), bool),
        "timeouts": timeouts}, {"source": str(path)})


def ogbench_download(name: str, dest: Path) -> Path:
    """OGBench's dataset `name` (and its -val file) through ogbench's own downloader, into the
    cache folder of `dest`, once; without a network the error says what to pass instead."""
    with file_lock(dest.with_suffix(".lock")):
        if not dest.exists():
            from rlcore.envs.ogbench import import_ogbench
            try:
                import_ogbench().download_datasets([name], dataset_dir=str(dest.parent))
            except (urllib.error.URLError, OSError) as exc:
                raise DatasetError(
                    f"cannot download OGBench dataset {name!r} ({getattr(exc, 'reason', exc)}); "
                    "without a network pass a local file (env.dataset=/path/to/file.npz) or make "
                    "one here (rlcore data list shows the goal-conditioned recipes)") from None
    return dest

"""Resolve `env.dataset` to an OfflineDataset. One name space, tried in this order:

1. a path to a D4RL-format .hdf5 file;             /data/hopper_medium-v2.hdf5
2. a URL of one (downloaded into the cache);       https://.../hopper_medium-v2.hdf5
3. a dataset generated here (made once, stored as a Minari dataset); hopper-pd-noisy
4. a D4RL gym-MuJoCo v2 name (downloaded, cached); hopper-medium-replay-v2
5. a Minari dataset id (local, else downloaded);   mujoco/hopper/medium-v0
6. an OGBench .npz file, or an OGBench name (downloaded by ogbench, cached); cube-single-play-v0
Two processes making the same cache entry wait on one lock; files appear atomically.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from rlcore.data import DatasetError, OfflineDataset, load_hdf5
from rlcore.fileio import file_lock
from rlcore.registry import DATASETS
from rlcore.evaluation.scores import d4rl_reference
from rlcore.data.sources import (d4rl_url, download, load_minari, load_ogbench_npz, looks_like_minari_id,
                            minari_root, ogbench_download, save_minari)

OGBENCH_NAME = re.compile(r"^(visual-)?(pointmaze|antmaze|humanoidmaze|antsoccer|cube|scene|puzzle|"
                          r"powderworld)-[a-z0-9-]+-v\d+$")


def data_dir(configured: str | None = None) -> Path:
    return Path(configured or os.environ.get("RLCORE_DATA_DIR")
                or Path.home() / ".cache" / "rlcore" / "datasets").expanduser()


def generated_id(name: str, transitions: int, seed: int) -> str:
    """Minari id of a generated dataset: hopper-pd-noisy -> rlcore/hopper/pd-noisy-n200000-s0-v0."""
    return f"{generated_stem(name)}-n{transitions}-s{seed}-v0"


def generated_stem(name: str) -> str:
    """rlcore/<env>/<recipe>; a recipe that rolls out shipped policies adds their fingerprint
    (hopper-medium -> rlcore/hopper/medium-p1a2b3c4d), so re-exported policies never reuse
    stale data."""
    env, rest = name.split("-", 1)
    return f"rlcore/{env}/{rest}{files_fingerprint(getattr(DATASETS.get(name), 'shipped', ()))}"


def cached_generated(name: str) -> list[Path]:
    """The stored copies of a generated dataset (any size and seed) for today's shipped policies."""
    stem = minari_root() / generated_stem(name)
    return sorted(p for p in stem.parent.glob(f"{stem.name}-n*-s*-v0") if (p / "data").exists())


def files_fingerprint(paths) -> str:
    """'-p' and 8 hex digits of the files' SHA-256 ('' when none of them exists)."""
    digest, found = hashlib.sha256(), False
    for path in paths:
        if Path(path).exists():
            digest.update(Path(path).read_bytes())
            found = True
    return f"-p{digest.hexdigest()[:8]}" if found else ""


def looks_like_path(name: str) -> bool:
    return (name.endswith((".hdf5", ".h5", ".npz")) and not is_url(name)
            or Path(name).expanduser().is_file())


def resolve_transitions(name: str, transitions: int | None) -> int:
    """`data.transitions`, or when unset the recipe's own size (D4RL's and OGBench's 1M; less
    where a recipe is slow to roll out, as cube-single)."""
    if transitions is not None:
        return int(transitions)
    return int(getattr(DATASETS.get(name), "default_transitions", 1_000_000)) if name in DATASETS \
        else 1_000_000


def is_url(name: str) -> bool:
    return name.startswith(("http://", "https://"))


def d4rl_cache_path(name_or_url: str, directory: str | None = None) -> Path:
    stem = Path(name_or_url).stem if is_url(name_or_url) else name_or_url
    return data_dir(directory) / "d4rl" / f"{stem}.hdf5"


def locate(name: str, transitions: int | None = None, seed: int = 0,
           directory: str | None = None) -> tuple[str, Path]:
    """(kind, where the dataset lives or will live): file, url, generated, d4rl, minari or
    ogbench."""
    if looks_like_path(name):
        return "file", Path(name).expanduser()
    if is_url(name):
        return "url", d4rl_cache_path(name, directory)
    if name in DATASETS:
        return "generated", minari_root() / generated_id(name, resolve_transitions(name, transitions), seed)
    if d4rl_url(name) is not None:
        return "d4rl", d4rl_cache_path(name, directory)
    if looks_like_minari_id(name):
        return "minari", minari_root() / name
    if OGBENCH_NAME.match(name):
        return "ogbench", data_dir(directory) / "ogbench" / f"{name}.npz"
    raise DatasetError(
        f"unknown dataset {name!r}; valid: generated {', '.join(DATASETS.names())}; D4RL names "
        "<hopper|halfcheetah|walker2d|ant>-<random|medium|expert|medium-replay|medium-expert|"
        "full-replay>-v2; a Minari id like mujoco/hopper/medium-v0; an OGBench name like "
        "cube-single-play-v0; or a path or URL to a D4RL-format .hdf5 file or an OGBench .npz file")


def load_dataset(name: str, transitions: int | None = None, seed: int = 0,
                 directory: str | None = None, progress: bool = True) -> OfflineDataset:
    kind, where = locate(name, transitions, seed, directory)
    if kind == "file":
        return load_ogbench_npz(where) if where.suffix == ".npz" else load_hdf5(where)
    if kind == "url":
        return load_hdf5(download(name, where, progress))
    if kind == "generated":
        return make_generated(name, resolve_transitions(name, transitions), seed, progress)
    if kind == "ogbench":
        return load_ogbench_npz(ogbench_download(name, where), name=name)
    if kind == "d4rl":
        return load_hdf5(download(d4rl_url(name), where, progress), name=name)
    return load_minari(name)


def score_family(name: str) -> str:
    """hopper from hopper-medium-v2, hopper_medium-v2.hdf5 or mujoco/hopper/medium-v0."""
    if "/" in name and not Path(name).exists():
        return name.split("/")[-2]
    return Path(name).stem.split("-")[0].split("_")[0]


def make_generated(name: str, transitions: int, seed: int, progress: bool) -> OfflineDataset:
    """Made once by its recipe and stored in Minari's folder with D4RL's reference returns."""
    dataset_id = generated_id(name, transitions, seed)
    with file_lock(minari_root() / f".{dataset_id.replace('/', '_')}.lock"):
        if not (minari_root() / dataset_id / "data").exists():
            import gymnasium as gym
            recipe = DATASETS.get(name)
            dataset = recipe.make(transitions, seed, progress=progress)
            family = score_family(name)
            try:       # D4RL's reference returns where the family has them; none for goal data
                ref = d4rl_reference(family)
                refs, note = (ref.ref_min, ref.ref_max), f"; reference returns are D4RL's for {family}"
            except KeyError:
                refs, note = (None, None), ""
            make_env = getattr(recipe, "make_env", None)     # OGBench's: registers its envs first
            env = make_env() if make_env else gym.make(recipe.gym_id, **recipe.gym_kwargs)
            try:
                save_minari(dataset, dataset_id, env, *refs,
                            f"{name}: {recipe.description}; {transitions} transitions, seed {seed}{note}")
            finally:
                env.close()
    dataset = load_minari(dataset_id, download_missing=False)
    dataset.name = name
    return dataset

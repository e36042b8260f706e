"""Resolve `env.dataset` (a registered name or a D4RL hdf5 path) to an OfflineDataset.

Generated datasets are made once and cached as D4RL-format hdf5 files; two processes
making the same dataset wait on one lock, and the file appears atomically.
"""
from __future__ import annotations

import os
from pathlib import Path

from rlcore.data import DatasetError, OfflineDataset, load_hdf5, save_hdf5
from rlcore.fileio import file_lock
from rlcore.registry import DATASETS


def data_dir(configured: str | None = None) -> Path:
    return Path(configured or os.environ.get("RLCORE_DATA_DIR")
                or Path.home() / ".cache" / "rlcore" / "datasets").expanduser()


def cache_path(name: str, transitions: int, seed: int, directory: str | None = None) -> Path:
    return data_dir(directory) / f"{name}-n{transitions}-s{seed}.hdf5"


def looks_like_path(name: str) -> bool:
    return name.endswith((".hdf5", ".h5")) or os.sep in name


def load_dataset(name: str, transitions: int = 200_000, seed: int = 0,
                 directory: str | None = None, progress: bool = True) -> OfflineDataset:
    if looks_like_path(name):
        return load_hdf5(Path(name).expanduser())
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS.names())}, "
                           "or a path to a D4RL-format .hdf5 file")
    path = cache_path(name, transitions, seed, directory)
    with file_lock(path.with_suffix(".lock")):
        if not path.exists():
            dataset = DATASETS.get(name).make(transitions, seed, progress=progress)
            save_hdf5(dataset, path)
    return load_hdf5(path, name=name)

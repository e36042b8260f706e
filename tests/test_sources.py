"""Remote sources on data made here: D4RL downloads from a loopback server, Minari round trip,
cut-off downloads, and two processes making one dataset."""
import http.server
import subprocess
import sys
import threading

import numpy as np
import pytest

from rlcore.data import DatasetError, save_hdf5
from rlcore.data.datasets import d4rl_cache_path, load_dataset
from rlcore.data.sources import d4rl_url
from tests.conftest import episodes_dataset


class Server:
    """Serves one payload at any path; `mode` cut sends half of it under the full length."""

    def __init__(self, payload: bytes, mode: str = "ok"):
        self.payload, self.mode, self.requests = payload, mode, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.payload)))
                self.end_headers()
                body = outer.payload[: len(outer.payload) // 2] if outer.mode == "cut" else outer.payload
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def d4rl_file(tmp_path):
    ds = episodes_dataset([30, 40, 50], obs_dim=11, action_dim=3)
    return ds, save_hdf5(ds, tmp_path / "served.hdf5").read_bytes()


def test_d4rl_urls_follow_d4rl_naming():
    assert d4rl_url("hopper-medium-replay-v2").endswith("gym_mujoco_v2/hopper_medium_replay-v2.hdf5")
    assert d4rl_url("halfcheetah-medium-expert-v2").endswith("halfcheetah_medium_expert-v2.hdf5")
    assert d4rl_url("hopper-medium-v0") is None and d4rl_url("pen-human-v1") is None


def test_d4rl_name_is_downloaded_once_then_loaded_from_the_cache(monkeypatch, d4rl_file):
    ds, payload = d4rl_file
    server = Server(payload)
    monkeypatch.setenv("RLCORE_D4RL_BASE_URL", server.url)
    try:
        first = load_dataset("hopper-medium-v2", progress=False)
        second = load_dataset("hopper-medium-v2", progress=False)
    finally:
        server.close()
    assert server.requests == 1
    assert first.name == "hopper-medium-v2"
    np.testing.assert_array_equal(first.observations, ds.observations)
    np.testing.assert_array_equal(second.rewards, ds.rewards)


@pytest.mark.parametrize("mode, message", [("cut", "cut off|broke off"), ("garbage", "not a readable hdf5")])
def test_broken_downloads_never_leave_a_file_that_loads(monkeypatch, d4rl_file, mode, message):
    _, payload = d4rl_file
    server = Server(b"x" * 5000 if mode == "garbage" else payload, mode="cut" if mode == "cut" else "ok")
    monkeypatch.setenv("RLCORE_D4RL_BASE_URL", server.url)
    try:
        with pytest.raises(DatasetError, match=message):
            load_dataset("walker2d-expert-v2", progress=False)
    finally:
        server.close()
    cache = d4rl_cache_path("walker2d-expert-v2")
    assert not cache.exists()
    assert not [p for p in cache.parent.iterdir() if p.suffix == ".tmp"]


def test_no_network_gives_a_message_with_what_to_do_instead(monkeypatch):
    monkeypatch.setenv("RLCORE_D4RL_BASE_URL", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(DatasetError, match="without a network, pass a local copy"):
        load_dataset("hopper-expert-v2", progress=False)


def test_minari_round_trip_keeps_episodes_and_reference_scores(monkeypatch, tmp_path):
    minari = pytest.importorskip("minari")
    from minari.data_collector import EpisodeBuffer
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds = load_dataset("hopper-pd-noisy", transitions=1500, seed=0, progress=False)
    episodes, start = [], 0
    for end in ds.episode_ends():
        obs = np.concatenate([ds.observations[start:end], ds.next_observations[end - 1:end]])
        episodes.append(EpisodeBuffer(observations=list(obs), actions=list(ds.actions[start:end]),
                                      rewards=list(ds.rewards[start:end]),
                                      terminations=list(ds.terminals[start:end]),
                                      truncations=list(ds.timeouts[start:end])))
        start = end
    minari.create_dataset_from_buffers(
        "rlcoretest/hopper/tiny-v0", episodes, env="Hopper-v5", eval_env="Hopper-v5",
        ref_min_score=-20.0, ref_max_score=3000.0, algorithm_name="pd-noisy", author="rlcore",
        author_email="tests@rlcore.invalid", code_permalink="https://example.invalid/rlcore",
        description="rlcore test data")
    loaded = load_dataset("rlcoretest/hopper/tiny-v0")
    for key in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_allclose(getattr(loaded, key), getattr(ds, key), rtol=1e-6)
    assert loaded.metadata["ref_max_score"] == 3000.0
    from rlcore.evaluation.scores import reference_for
    assert reference_for("hopper", loaded.metadata).source == "dataset metadata"


def test_two_processes_making_one_dataset_do_not_corrupt_it(tmp_path):
    code = ("from rlcore.data.datasets import load_dataset;"
            "d = load_dataset('hopper-random', transitions=4000, seed=1, progress=False);"
            "print(len(d), float(d.rewards.sum()))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs[0] == outputs[1] and outputs[0].startswith("4000 ")

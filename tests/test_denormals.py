"""Flush-to-zero reaches the OpenMP workers that were running before the agent was built."""
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import torch
    torch.set_num_threads(2)
    x = torch.full((1 << 20,), 1e-39)            # subnormal float32, split across both threads
    (x * 0.5 + x).sum()                          # a parallel op: the workers start, mode off
    from rlcore.agent import Spec
    from rlcore.config import load_config
    from rlcore.training.trainer import build_agent
    build_agent(load_config(["agent=bc"]), Spec(3, 2), torch.device("cpu"))
    print(int(((x * 1.0) != 0).sum()))           # subnormal outputs left by any thread
""")


@pytest.mark.skipif(sys.platform != "linux", reason="the OpenMP runtimes are found on Linux")
def test_building_an_agent_flushes_subnormals_on_running_worker_threads():
    if not torch.set_flush_denormal(False):
        pytest.skip("this processor has no flush-to-zero mode")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    # Without the workers' mode, the worker's half of the tensor stays subnormal (524288).
    assert int(out.stdout.strip().splitlines()[-1]) == 0

"""Flush subnormal floats to zero on every thread an update runs on.

Weighted-BC losses whose weights sit at zero for long stretches (O-DICE's ReLU(delta), and
the AWR agents) let Adam's moment estimates decay geometrically into the subnormal range, and
x86 arithmetic on subnormals is tens of times slower. `torch.set_flush_denormal(True)` sets
flush-to-zero / denormals-are-zero in the *calling* thread's MXCSR only. Worker threads of
torch's OpenMP pool copy the mode when they are created, so threads that some earlier
parallel op already started keep computing with subnormals (measured on 2 threads: half of
every parallel op, and the update slowed 3-4x over 20k steps).

`flush_denormals()` therefore also runs a parallel region on each OpenMP runtime loaded in
the process (libgomp, and LLVM's or Intel's, which export the same `GOMP_parallel` entry
point), in which every thread of the pool sets the mode on itself. The result is the same
arithmetic as a process that set the mode before its first parallel op; nothing in the math
changes beyond what flush-to-zero already did.
"""
from __future__ import annotations

import ctypes
import os
import threading

import torch

_OPENMP_RUNTIMES = ("libgomp", "libomp", "libiomp")
_lock = threading.Lock()


def loaded_openmp_runtimes() -> list[str]:
    """Paths of the OpenMP runtimes mapped into this process (Linux; [] elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if ".so" in line}
    except OSError:
        return []
    return sorted(p for p in paths if os.path.basename(p).startswith(_OPENMP_RUNTIMES))


_REGION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@_REGION
def _set_on_this_thread(_data) -> None:
    torch.set_flush_denormal(True)


def flush_denormals() -> bool:
    """Set flush-to-zero on this thread and on every OpenMP worker thread; False where the
    processor has no such mode (then nothing changes)."""
    if not torch.set_flush_denormal(True):
        return False
    with _lock:
        for path in loaded_openmp_runtimes():
            try:
                runtime = ctypes.CDLL(path)
                parallel = runtime.GOMP_parallel
            except (OSError, AttributeError):
                continue
            parallel.argtypes = [_REGION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            parallel.restype = None
            parallel(_set_on_this_thread, None, 0, 0)  # 0 threads: the pool's current size
    return True

"""Agents, one module per method family; importing this package registers them all."""
from rlcore.agents import (a2pr, bc, cpl, fdvl, gcbc, gcdt, gciql, gcivl, hiql, iql, odice,  # noqa: F401
                           pearl, piql, recoil, sac, sft, smore, td3bc)

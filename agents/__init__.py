"""Agents, one module per method family; importing this package registers them all."""
from rlcore.agents import (a2pr, bc, fdvl, gcbc, gcdt, gciql, gcivl, hiql, iql, odice, recoil,  # noqa: F401
                           sac, smore, td3bc)

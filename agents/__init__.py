"""Agents, one module per method family; importing this package registers them all."""
from rlcore.agents import (a2pr, bc, cpl, fdvl, gcbc, gcdt, gciql, gcivl, harpg, hdpo,  # noqa: F401
                           hiql, iql, npg_igt, nsgdm, odice, pearl, pg, piql, recoil, reinforce,
                           sac, sft, smore, td3bc)

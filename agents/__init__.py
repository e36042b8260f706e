"""Agents, one module per method family; importing this package registers them all."""
from rlcore.agents import a2pr, bc, fdvl, iql, odice, recoil, sac, td3bc  # noqa: F401

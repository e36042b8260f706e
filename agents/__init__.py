"""Agents, one module per method family; importing this package registers them all."""
from rlcore.agents import odice, sac  # noqa: F401

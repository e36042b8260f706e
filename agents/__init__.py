"""Agents, one module per method family; importing this package registers them all."""
from rlcore.agents import odice  # noqa: F401

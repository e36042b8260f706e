"""Environment and dataset makers; importing this package registers them all."""
from rlcore.envs import metaworld, mujoco, ogbench  # noqa: F401

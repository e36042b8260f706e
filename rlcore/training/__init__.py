"""Training: the device-resident buffer, the loop every agent shares (offline, online, staged),
compiled and captured updates, K seeds at once, checkpoints and resume."""

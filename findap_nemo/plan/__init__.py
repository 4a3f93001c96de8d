"""Parallelism and memory planner: estimate per-GPU memory and step time of TP/PP/VPP/CP/DP layouts."""

"""CUDA backend (see device.py)."""

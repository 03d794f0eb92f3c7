"""Neural-network building blocks."""

from tinygrad_np.nn import functional

__all__ = ["functional"]

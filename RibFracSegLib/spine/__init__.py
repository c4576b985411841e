"""Vertebral bodies along the spine track (ribs.anatomy), named by counting from the ribs and sacrum."""

from .levels import SpineLevels, Vertebra, vertebral_levels

__all__ = ["SpineLevels", "Vertebra", "vertebral_levels"]

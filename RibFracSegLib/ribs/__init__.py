"""Ribs: all 24 segmented and numbered from the CT alone, with centrelines (head -> anterior end)."""

from .labels import Rib, RibLabels, rib_from_label_value, rib_label_value
from .segment import segment_ribs

__all__ = ["Rib", "RibLabels", "rib_from_label_value", "rib_label_value", "segment_ribs"]

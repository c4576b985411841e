"""The headless half of the RibFracSeg Slicer module.

Everything here may import `slicer` (MRML) and `vtk` but never `qt`, `ctk` or `slicer.app`, so the
same code runs inside Slicer, in Slicer's Python console, and in pytest against the `slicer-core`
wheel. The module file RibFracSeg.py only wires these pieces to the panel.
"""

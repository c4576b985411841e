"""RibFracSegLib: the headless library behind RibFracSeg.

Reads as a pipeline: io -> preprocess -> network -> inference -> postprocess -> export.
It never imports slicer, qt, ctk or vtk, so the same code runs in a console, in CI and inside
Slicer's Python.
"""

__version__ = "0.1.0"

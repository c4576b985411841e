"""Synthetic chest/abdomen CT phantoms with known truth (fractures, vertebral levels, ribs).

We have no labelled data and may download none, so the project makes its own CTs; everything
downstream reads them exactly as it reads the RibFrac challenge data.
"""

from RibFracSegLib.phantom.generate import (GENERATOR_VERSION, FractureTruth, PhantomCase, PhantomParams,
                                            VertebraTruth, generate_phantom)
from RibFracSegLib.phantom.rib_truth import detections_from_phantom, rib_labels_from_phantom
from RibFracSegLib.phantom.tissue import Tissue

__all__ = ["GENERATOR_VERSION", "FractureTruth", "PhantomCase", "PhantomParams", "Tissue", "VertebraTruth",
           "detections_from_phantom", "generate_phantom", "rib_labels_from_phantom"]

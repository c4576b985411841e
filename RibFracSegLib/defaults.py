"""Every default constant of the project, in one place.

Checkpoints carry their own pre-processing and thresholds; these values are used only when a
checkpoint (or the caller) says nothing. Import from here; never repeat a number elsewhere.
"""

from __future__ import annotations

from pathlib import Path

# --- Where shipped files live ---------------------------------------------------------------
PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESOURCES_DIR = PROJECT_ROOT / "Resources"
MODELS_DIR = RESOURCES_DIR / "Models"
DEFAULT_FRACTURE_CHECKPOINT = MODELS_DIR / "ribfrac_default.pt"
DEFAULT_L3_CHECKPOINT = MODELS_DIR / "l3_default.pt"

# --- CT intensities (HU) -----------------------------------------------------------------------
AIR_HU = -1024
OUTSIDE_FOV_HU = -2048  # what many scanners store outside the reconstruction circle
HU_WINDOW = (-200.0, 1000.0)  # FracNet's clip window, mapped linearly to [-1, 1]
BONE_HU = 300.0  # "bone" for the spine step and for skipping patches

# --- Fracture inference -------------------------------------------------------------------------
PATCH_SIZE = (64, 64, 64)
OVERLAP = 0.5
BATCH_SIZE = 4
PROB_THRESHOLD = 0.1  # probabilities at or below are zeroed (FracNet)
MIN_FRACTURE_VOLUME_MM3 = 50.0  # FracNet's 100 voxels at ~0.7x0.7x1 mm
MIN_CONFIDENCE = 0.0  # drop detections whose mean probability is lower (0 keeps all, as FracNet)
SPINE_MARGIN_MM = 5.0

# --- Phantoms -----------------------------------------------------------------------------------
PHANTOM_FIELDS_OF_VIEW = ("thorax", "thorax_abdomen", "abdomen_pelvis")
PHANTOM_ORIENTATIONS = ("LPS", "RAS", "LPI", "oblique")

# --- Vertebral levels (VerSe convention: C1-C7 = 1-7, T1-T12 = 8-19, L1-L5 = 20-24, sacrum = 26)
VERTEBRA_IDS = {
    **{f"C{i}": i for i in range(1, 8)},
    **{f"T{i}": 7 + i for i in range(1, 13)},
    **{f"L{i}": 19 + i for i in range(1, 6)},
    "S": 26,
}
L3_ID = VERTEBRA_IDS["L3"]

# --- Ribs (label image: 1-12 left ribs 1-12, 13-24 right ribs 1-12) ----------------------------
RIB_UNNUMBERED_LEFT = 25  # a left rib found but not numbered confidently
RIB_UNNUMBERED_RIGHT = 26  # likewise on the right

# --- RibFrac label codes -----------------------------------------------------------------------
FRACTURE_CODES = {1: "displaced", 2: "non-displaced", 3: "buckle", 4: "segmental", -1: "undefined"}

# --- L3 locator and body composition (Alberta protocol, Mourtzakis 2008) -------------------------
L3_MIP_HU_RANGE = (100.0, 1500.0)
L3_MIP_SPACING_MM = 1.0
L3_MIN_CONFIDENCE = 0.1
MUSCLE_HU = (-29.0, 150.0)
SAT_HU = (-190.0, -30.0)
VAT_HU = (-150.0, -50.0)

# --- L3 locator: projections, network input, decoding, body-composition geometry ----------------
L3_MIP_BORDER_MM = 0.0  # zero this much of the in-plane border before projecting (Kanavati: 40 voxels)
L3_SAGITTAL_SLAB_MM = 10.0  # sagittal MIP = max over +-this around the body's left-right centre
L3_BODY_HU = -500.0  # "inside the body" for the body centre, body mask and projections
L3_INPUT_COLS = 512  # MIPs are padded/cropped to this many 1-mm columns, centred
L3_INPUT_MIN_ROWS = 512  # ... and padded (never cropped) to at least this many rows
L3_ROW_MULTIPLE = 32  # rows padded to a multiple of the network's total down-sampling
L3_TARGET_SIGMA_MM = 3.0  # Gaussian line at the L3 row in the training target
L3_TARGET_BAND = 0.4  # share of the central columns carrying the target (and read when decoding)
L3_UNET_BASE = 8  # channels of the first level of "l3_unet2d"
L3_UNET_DEPTH = 5  # levels, each halving the resolution (the stem halves it once more)
L3_SKIN_MM = 3.0  # skin band left out of the fat/muscle compartments
L3_WALL_CLOSING_MM = 5.0  # gaps in the abdominal muscle wall up to twice this are sealed
L3_MUSCLE_RIM_MM = 4.0  # muscle pieces within this of the inner compartment's rim are wall muscle
L3_OVERLAY_WINDOW_HU = (-160.0, 240.0)  # abdominal window for the overlay PNG

# --- Slicer terminology for fracture segments (DICOM/SNOMED CT: scheme, code, meaning) -------------
TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
FRACTURE_CATEGORY_CODE = ("SCT", "49755003", "Morphologically Altered Structure")
FRACTURE_TYPE_CODE = ("SCT", "33737001", "Fracture of rib")
FRACTURE_REGION_CODE = ("SCT", "113197003", "Rib")

# --- Sliding window (fracture inference engine) --------------------------------------------------
GAUSSIAN_SIGMA_SCALE = 0.125  # sigma = 0.125 x patch size, as nnU-Net and MONAI
BLEND_WEIGHT_FLOOR = 1e-3  # smallest blending weight at a patch's corners (MONAI's floor)
BODY_HU = -500.0  # "inside the body" for skipping patches (lungs are enclosed by tissue above this)
SKIP_CELL_VOXELS = 4  # block size of the bone/body grid that decides which patches to skip
CPU_BATCH_SIZE = 2  # 64^3 patches per forward on CPU: larger batches run slower per patch here
BF16_PROB_TOLERANCE = 1e-3  # bf16 is used on CPU only if it keeps probabilities this close to fp32

# --- Post-processing (FracNet's, in millimetres) ----------------------------------------------------
SPINE_MEDIAN_MM = 7.0  # FracNet's 10-pixel median filter at ~0.7 mm
SPINE_DISK_MM = 5.0  # FracNet's radius-7 disk at ~0.7 mm
SPINE_KEEP_FRACTION = 1.0 / 3.0  # keep projected-bone pixels above this fraction of the maximum
SUBMISSION_CSV = "ribfrac-pred.csv"
L3_WALL_MAX_MM = 30.0  # the abdominal muscle wall is taken as at most this thick
L3_SPINE_MARGIN_MM = 10.0  # muscles this far in front of the vertebral body still count (psoas)
L3_VERTEBRA_HU = 150.0  # marrow of the vertebral body is above this (below BONE_HU): locates its centre
L3_EDGE_MM = 5.0  # a peak this close to the MIP's first/last row is not a maximum: L3 lies beyond the CT

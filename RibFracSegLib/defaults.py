"""Every default constant of the project, in one place.

Checkpoints carry their own pre-processing and thresholds; these values are used only when a
checkpoint (or the caller) says nothing. Import from here; never repeat a number elsewhere.
"""

from __future__ import annotations

# --- Shipped models: package data of RibFracSegLib (read by RibFracSegLib.shipped) -------------
MODELS_PACKAGE_DIR = "models"  # RibFracSegLib/models/ in the source, the wheel and the Slicer extension
SHIPPED_MODELS = {"fracture": "ribfrac_default.pt",  # the rib-frame detector (issue 24), the default
                  "fracture_ct": "ribfrac_ct.pt",  # the sliding-window detector: the frames' fallback, FracNet-style
                  "l3": "l3_default.pt"}

# --- Cases: which files are CTs and how a path becomes a case id (RibFracSegLib.cases) --------
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LIST_SUFFIXES = (".txt", ".lst", ".list")  # a file of CT paths, one a line ('#' comments)
CASE_ROLE_TAGS = ("-image", "-label")  # RibFrac layout: RibFrac1-image.nii.gz and RibFrac1-label.nii.gz are case RibFrac1

# --- Run options and their limits (RibFracSegLib.options validates them in one place) ---------
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "mixed", "fp16")
PROGRESS_LOG_STEP_PERCENT = 25  # off a terminal (a log, CI, the Slicer console) progress prints a line per this many %

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
PHANTOM_EXTRA_FIELDS_OF_VIEW = ("abdomen", "lumbar_pelvis")  # only asked for by name: short upper-abdomen scans
# (T10-L4); lumbar spine and pelvis from L2 down, starting below the ribs (the count can only start at the sacrum)
PHANTOM_ORIENTATIONS = ("LPS", "RAS", "LPI", "oblique")
PHANTOM_MIN_SIZE, PHANTOM_MAX_SIZE = 64, 1024  # in-plane matrix that `phantom --size` and `demo --size` accept
PHANTOM_SUBSLICE_MM = 1.5  # with a slice profile, a slice averages an odd number of sub-slices this far apart at
#   most (a scanner's slice integrates over its thickness; sampled at its centre alone, a thin cortex running
#   nearly along the slices shows as dashes on 2-3 mm phantoms and no real CT)

# --- Vertebral levels (VerSe convention: C1-C7 = 1-7, T1-T12 = 8-19, L1-L5 = 20-24, sacrum = 26)
VERTEBRA_IDS = {
    **{f"C{i}": i for i in range(1, 8)},
    **{f"T{i}": 7 + i for i in range(1, 13)},
    **{f"L{i}": 19 + i for i in range(1, 6)},
    "S": 26,
}
L3_ID = VERTEBRA_IDS["L3"]
VERTEBRA_LABEL_COLOR = (0.35, 0.8, 1.0)  # Slicer's '<CT> vertebrae' labels: cyan, apart from the fracture/L3 points' red

# --- Ribs (label image: 1-12 left ribs 1-12, 13-24 right ribs 1-12) ----------------------------
RIB_UNNUMBERED_LEFT = 25  # a left rib found but not numbered confidently
RIB_UNNUMBERED_RIGHT = 26  # likewise on the right
RIB_MAX_PIXEL_MM = 3.0  # coarser CTs get no ribs (a rib is 5-8 mm thick: a few voxels at least)
RIB_MAX_SLICE_MM = 5.0
RIB_WORK_MM = 1.5  # the rib step runs on a grid of blocks about this size, then labels the input grid
SLAB_VOXELS = 1 << 22  # whole-volume steps done a slab of slices at a time (working grid, holes filled per slice):
#   small temporaries, reused, not volumes of fresh memory (slow to touch first on some machines)
RIB_LUNG_HU = -400.0  # air in the lungs is below this
RIB_LUNG_MIN_ML = 50.0  # smaller air pockets are not lung
RIB_SPINE_OPEN_MM = 12.0  # opening diameter that removes ribs (thinner) but keeps vertebral bodies
RIB_SPINE_WINDOW_MM = 40.0  # a slice's vertebral body is searched this far left/right of the body's centre
RIB_SPINE_BLOB_MM = 40.0  # ... and its bone after the opening reaches at most this beyond its centre (crop of the search)
RIB_SPINE_MIN_AREA_MM2 = 150.0  # a vertebral body's bone after the opening covers at least this
RIB_SPINE_SMOOTH_MM = 15.0  # the spine track is a running median over this many mm
RIB_BONE_HU = 150.0  # rib bone (cortex and marrow) on the working grid is above this
RIB_FILL_HOLE_MM2 = 1500.0  # enclosed holes up to this area in an axial slice are filled (fatty marrow)
RIB_MAX_THICKNESS_MM = 12.0  # bright structures thicker than this in the axial plane are not ribs
RIB_THICK_RIM_MM = 1.5  # ... and neither is this rim around them
RIB_SPINE_HALF_WIDTH_MM = 22.0  # vertebral body and spinous process: within this of the midline
RIB_SPINE_FRONT_MM = 25.0  # ... from this far in front of the vertebral body's centre backwards
RIB_STERNUM_HALF_WIDTH_MM = 20.0  # sternum: within this of the midline, in front of the spine zone
RIB_MAX_LUNG_DISTANCE_MM = 10.0  # beside the lungs, rib bone lies within this of them; scapulae and clavicles beyond
RIB_SCAPULA_ABOVE_LUNG_BASE_MM = 60.0  # the lung rule applies from this far above the lowest lung
RIB_SCAPULA_BELOW_APEX_MM = 25.0  # ... up to this far below the lungs' top slice
RIB_CLAVICLE_BELOW_APEX_MM = 40.0  # clavicles: bone in front of that line, this near the apex, far from the lung
RIB_FLAT_RIBS_MM = 60.0  # ribs 1-2 lie almost flat within this of the apex (thickness is judged in 3-D there)
RIB_REGION_MAX_LUNG_MM = 12.0  # in the shoulders a rib's median distance to the lung is below this
RIB_SCAPULA_MEDIAL_MM = 55.0  # ... and lateral to this (scapulae's medial border; rib necks lie inside it)
RIB_SCAPULA_FRONT_MM = 30.0  # ... to bone behind this line
RIB_SEED_BAND_MM = (30.0, 60.0)  # paravertebral band (left-right distance from the spine) for seeds
RIB_SEED_BAND_Y_MM = (-25.0, 60.0)  # ... and its antero-posterior extent from the vertebral body
RIB_SEED_MIN_MM3 = 100.0  # smaller bone pieces in the band are not a rib's posterior arc
RIB_SEED_MIN_PITCH_MM = 12.0  # neighbouring ribs' posterior arcs are at least this far apart in z
RIB_SEED_TIE_MM = 5.0  # posterior arcs closer than this in height are ordered by their ribs' mean height
RIB_SEED_MAX_HEIGHT_MM = 25.0  # a band piece taller than this holds more than one rib
RIB_SEED_SMOOTH_MM = 2.0  # the band's slice profile is smoothed by a Gaussian of this sigma
RIB_SEED_PROMINENCE = 0.15  # a rib's peak stands out by this share of the profile's maximum
RIB_MIN_VOLUME_MM3 = 1000.0  # smaller grown seeds are not ribs
RIB_MIN_HEIGHT_SPAN_MM = 15.0  # a rib slopes: it spans at least this in z (flat bright rims of organs don't)
RIB_MISSING_GAP = 1.55  # a gap this many local pitches (its neighbouring gaps) or more between ribs' heights is a rib not found
RIB_TYPICAL_PITCH_MM = 22.0  # vertical distance between neighbouring ribs (used when few are found)
RIB_TOP_MARGIN_MM = 30.0  # the top rib found is rib 1 only if its posterior arc is at most this far below the apex
RIB_APEX_AREA_FRACTION = 0.25  # the apex is in view if the CT's top slice holds at most this share of the widest lung slice
RIB_SHIFT_FRACTION = 0.6  # left-right height difference off its median by this share of the pitch: a count shift
RIB_MIN_LOCAL_PITCH_MM = 10.0  # ... with the local pitch taken as at least this
RIB_APEX_MIN_AREA_MM2 = 1500.0  # the apex is the highest slice with at least this much lung (more than the trachea)
RIB_BOTTOM_MARGIN_MM = 40.0  # rib 12 counts as in view when the CT reaches this far below the lowest rib's mean height
RIB_BONE_HU_FULL = 120.0  # at full resolution a rib's voxels (cortex, marrow, partial volume) exceed this
RIB_PAIR_LENGTH_RATIO = 0.8  # left and right rib k agree when the shorter is at least this share of the longer
RIB_TRACED_MIN_GAIN_PAIRS = 2  # traced ribs replace an incomplete grown set with at least this many more agreeing pairs
# Tracing a rib as a curve (ribs/trace.py): cross-sections of the full-resolution CT every step
RIB_TRACE_STEP_MM = 2.0  # from one cross-section to the next along the rib
RIB_TRACE_SECTION_MM = 9.0  # a cross-section is sampled this far each way from the predicted centre
RIB_TRACE_PIXEL_MM = 0.75  # ... at this pixel size
RIB_TRACE_SMOOTH_MM = 0.5  # Gaussian sigma on the cross-section (sharp kernels' noisy bone edges)
RIB_TRACE_BONE_HU = 150.0  # bone in a cross-section (cortex and marrow, partial volume at 3-5 mm slices)
RIB_TRACE_CATCH_MM = 5.0  # the rib's blob reaches this near the predicted centre, else the section is a gap
RIB_TRACE_TAKE_MM = (4.5, 8.0)  # the blob's centroid is taken inside this ellipse (half thickness, half height)
RIB_TRACE_MAX_AREA_MM2 = 105.0  # more bone than this in it (of 113): the rib passes a bone mass, path as predicted
RIB_TRACE_MAX_MASS_MM = 30.0  # ... for at most this long (a clavicle or scapula crosses a rib in less)
RIB_TRACE_MIN_AREA_MM2 = 3.0  # less is noise
RIB_TRACE_MAX_SHIFT_MM = 0.75  # a step moves the centre at most this far across the predicted path (22 deg)
RIB_TRACE_DIRECTION_MM = 8.0  # the direction is the chord over this much of the path behind
RIB_TRACE_TURN_MM = 10.0  # a turn of more than RIB_TRACE_MAX_TURN_DEG over this much path ends the rib
RIB_TRACE_MAX_TURN_DEG = 35.0  # (ribs bend slowly; a jump to touching bone or cartilage turning up does not)
RIB_TRACE_GAP_MM = 12.0  # outward, sections without bone over this much path end the rib (a break is less)
RIB_TRACE_HEAD_GAP_MM = 6.0  # inward, to the head
RIB_TRACE_HEAD_MM = 15.0  # the inward trace stops this far (left-right) from the spine's centre: the rib head
RIB_TRACE_MAX_INWARD_MM = 80.0  # from the seed to the head is never longer than this
RIB_TRACE_SAME_MM = 4.0  # two traces within this of each other over most of one's posterior arc are one rib
RIB_TRACE_ARC_DX_MM = (30.0, 60.0)  # ... the posterior arc: this far left/right of the spine's centre
RIB_TRACE_HEIGHT_DX_MM = 40.0  # ribs are ordered by their path's height this far left/right of the spine
RIB_TRACE_RISE_DX_MM = (60.0, 110.0)  # here (left/right of the spine) a rib lies no higher than its posterior arc ...
RIB_TRACE_MAX_RISE_MM = 10.0  # ... plus this (ribs of LIDC-0001, CPTAC: <= 5.8; the scapular spine, lumbar transverse processes: >= 12.7)
RIB_TRACE_TUBE_MM = 7.0  # a rib's bone lies within this of its centreline (half a rib's height plus margin)
RIB_TAIL_BONE_HU = 200.0  # a trace's anterior tail is boneless where its sections hold too little above this
#   (costal cartilage, 100-200 HU, passes RIB_BONE_HU; `ribs.tails`)
RIB_TAIL_RADIUS_MM = 5.0  # ... within this of the centreline
RIB_TAIL_MIN_AREA_MM2 = 4.0  # ... too little: below this, or below RIB_TAIL_AREA_FRACTION of the rib's median
RIB_TAIL_AREA_FRACTION = 0.25  # ... over its middle third
RIB_TAIL_MIN_MM = 10.0  # only a boneless tail this long is cut (shorter ones: the bony end's own taper)
RIB_ASSIGN_MAX_MM = 15.0  # a detection farther than this from every rib centreline is on no rib
# Off by default: on 6 held-out phantoms it cut FROC 0.873 -> 0.788 (true fractures on ribs the rib
# step follows only part-way), while it halves false positives on real CTs (benchmarks/bench_on_rib.py)
ON_RIB_FILTER = False  # post-processing drops detections farther than ON_RIB_MARGIN_MM from every rib
ON_RIB_MARGIN_MM = 5.0
SKIP_BY_RIBS = True  # compute only patches near ribs when the rib set is complete (RibLabels.complete), else bone
RIB_SKIP_MARGIN_MM = 10.0  # patches farther than this from every rib are not computed (when ribs were found)
RIB_SKIP_MIN_PAIRS = 6  # ... and at least this many left/right pairs, numbered alike on both sides
ON_RIB_MIN_RIBS = 10  # the on-rib rule applies only when at least this many ribs were found
RIB_BRIDGE_MM = 6.0  # grown ribs: a loose rib-like piece this close to a rib's end is its part beyond a break
RIB_BRIDGE_MIN_MM3 = 200.0  # ... if at least this big
RIB_BRIDGE_UPRIGHT_MM = 20.0  # ... and not taller than this while taller than RIB_BRIDGE_UPRIGHT_RATIO x its
RIB_BRIDGE_UPRIGHT_RATIO = 1.5  # ... width: the sternum's edge outside the band (demo seed 11: 204 mm tall)
RIB_SKIN_DEPTH_MM = 40.0  # grown ribs: a rib's shallowest tenth lies within this of the skin (or of its ribs' median + slack)
RIB_SKIN_DEPTH_SLACK_MM = 20.0
RIB_MIN_REACH_MM = 60.0  # a rib reaches at least this far left/right of the spine (lumbar transverse processes don't)
RIB_MIN_FRONT_MM = 90.0  # ... or this far in front of the vertebral body (rib 1, short and tight, round to the manubrium: LIDC-0001 132 mm; the contrast-filled aorta beside the spine < 65)
RIB_HEAD_BOX_MM = 70.0  # rib_heads works within this left/right of the spine (> RIB_MIN_REACH_MM: the reach test holds)
RIB_HEAD_BOX_Y_MM = (60.0, 75.0)  # ... and this far in front of / behind the vertebral body (the posterior arcs)
RIB_HEAD_BLOCK_MM = 40.0  # ... moved with the spine in steps of this many mm of the column
RIB_HEAD_MIN_SPAN_MM = 10.0  # in the box a rib's posterior part spans this in z at least (the whole rib: RIB_MIN_HEIGHT_SPAN_MM)
RIB_STEEP_SPAN_MM = 30.0  # in the box a piece spanning this in z (a steep lower rib; a transverse process spans ~15) ...
RIB_STEEP_REACH_MM = 45.0  # ... is a rib when it reaches this far from the spine (lumbar transverse processes: < 45)
RIB_HEAD_LENGTH_MM = 10.0  # a rib's head and neck: its part within this of its most medial point
RIB_HEAD_MAX_FRONT_MM = 20.0  # a rib head is never further than this in front of the spine track (LIDC-IDRI-0001: 12 mm)

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
L3_MIP_ALIGN_TOLERANCE_DEG = 1.0  # a CT whose axes are tilted more than this from the patient's is resampled onto
# patient axes before its MIPs are made (l3/projections.patient_aligned; demo phantoms are stored up to 12 degrees oblique)
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
HEIGHT_RANGE_M = (0.5, 2.6)  # patient heights accepted for SMI, in metres (175 is centimetres: refused)

# --- Slicer terminology for fracture segments (DICOM/SNOMED CT: scheme, code, meaning) -------------
# Slicer's shipped contexts have no fracture type, so the module ships its own small context
# (RibFracSeg/Resources/Terminology) and loads it at start-up; the anatomic region comes from Slicer's
# own "Anatomic codes - DICOM master list", where Rib carries the Right/Left modifiers below.
TERMINOLOGY_CONTEXT = "Segmentation category and type - RibFracSeg"
FRACTURE_CATEGORY_CODE = ("SCT", "49755003", "Morphologically Altered Structure")
FRACTURE_TYPE_CODE = ("SCT", "33737001", "Fracture of rib")
FRACTURE_SLICER_LABEL = "rib fracture"  # the type's 3dSlicerLabel in our context file
REGION_CONTEXT = "Anatomic codes - DICOM master list"
FRACTURE_REGION_CODE = ("SCT", "113197003", "Rib")
SIDE_CODES = {"L": ("SCT", "7771000", "Left"), "R": ("SCT", "24028007", "Right")}
# The fracture's RibFrac type as the type modifier of "Fracture of rib" (only when a classifier gave one).
# SNOMED CT concepts for these four morphologies could not be confirmed from the sources at hand, so
# they are local codes of our own scheme "RibFracSeg" (value: "RibFrac-<label code>"); swap in the SCT
# codes once confirmed (the context file and these stay equal: tests/test_slicer_fracture_types.py).
FRACTURE_TYPE_MODIFIER_CODES = {
    1: ("RibFracSeg", "RibFrac-1", "Displaced fracture"),
    2: ("RibFracSeg", "RibFrac-2", "Non-displaced fracture"),
    3: ("RibFracSeg", "RibFrac-3", "Buckle fracture"),
    4: ("RibFracSeg", "RibFrac-4", "Segmental fracture"),
}
# Rib segments (Slicer's "Ribs" option): numbered rib types with a Left/Right type modifier, in our context too
RIB_CATEGORY_CODE = ("SCT", "123037004", "Anatomical Structure")
RIB_TYPE_CODES = {number: ("SCT", code, f"{ordinal} rib") for number, code, ordinal in (
    (1, "48535007", "First"), (2, "78247007", "Second"), (3, "25888004", "Third"), (4, "25523003", "Fourth"),
    (5, "15339008", "Fifth"), (6, "59558009", "Sixth"), (7, "24915002", "Seventh"), (8, "5953002", "Eighth"),
    (9, "22565002", "Ninth"), (10, "77644006", "Tenth"), (11, "58830002", "Eleventh"), (12, "43993008", "Twelfth"))}
RIB_TYPE_CODES[None] = FRACTURE_REGION_CODE  # an unnumbered rib: "Rib"
RIB_SEGMENT_COLOR = (253 / 255, 232 / 255, 158 / 255)  # Slicer's recommended colour for Rib

# --- DICOM SEG and SR of a DICOM input (dicom_seg.py, dicom_sr.py); codes as above: (scheme, value, meaning) ----
# Standard codes from DICOM PS3.16 / SNOMED CT as pydicom's code dictionary lists them; what has no
# standard concept uses our local scheme (declared in each file's Coding Scheme Identification).
LOCAL_SCHEME = ("RibFracSeg", "RibFracSeg local codes")  # designator, name (FRACTURE_TYPE_MODIFIER_CODES use it too)
DICOM_SERIES_NUMBERS = {"fractures_seg": 9101, "ribs_seg": 9102, "sr": 9103}  # after a scanner's own numbers
SR_PROCEDURE_CODE = ("SCT", "77477000", "Computed tomography")
SR_CONFIDENCE_CODE = ("DCM", "122157", "Probability")  # a detection's confidence, unit "1"
SR_VOLUME_CODE = ("SCT", "118565006", "Volume")
SR_CENTRE_CODE = ("DCM", "128138", "Center of Mass")  # a fracture's centroid, a SCOORD3D point in the SEG's frame
SR_MORPHOLOGY_CODE = ("SCT", "116676008", "Associated morphology")  # the RibFrac type, when one was given
SR_RIB_ARC_CODE = ("RibFracSeg", "RibFrac-arc", "Distance along the rib from its head")
SR_TYPE_PROBABILITY_CODE = ("RibFracSeg", "RibFrac-type-p", "Probability of the fracture type")
RIB_REGION_CODES = {"posterior": ("SCT", "255551008", "Posterior"), "lateral": ("SCT", "49370004", "Lateral"),
                    "anterior": ("SCT", "255549009", "Anterior")}  # thirds of a rib (ribs/assign.REGIONS)
L3_VERTEBRA_CODE = ("SCT", "36470004", "L3 vertebra")
SR_AREA_CODE = ("SCT", "42798000", "Area")
SR_SLICE_Z_CODE = ("DCM", "110903", "Image Position (Patient) Z")  # the L3 slice's height, mm
SR_SMI_CODE = ("RibFracSeg", "RibFrac-SMI", "Skeletal muscle index")
TISSUE_SITE_CODES = {"muscle": ("SCT", "127954009", "Skeletal muscle"),  # body composition areas' finding sites
                     "sat": ("SCT", "71966008", "Subcutaneous tissue"),
                     "vat": ("RibFracSeg", "RibFrac-VAT", "Visceral adipose tissue"),
                     "imat": ("RibFracSeg", "RibFrac-IMAT", "Intermuscular adipose tissue")}
SR_L3_POINT_CODE = ("DCM", "111010", "Center")  # the L3 point (RAS/LPS centre of the slice's vertebral body)
UCUM_UNITS = {"mm3": ("UCUM", "mm3", "cubic millimeter"), "mm": ("UCUM", "mm", "millimeter"),
              "1": ("UCUM", "1", "no units"), "cm2": ("UCUM", "cm2", "square centimeter"),
              "cm2/m2": ("UCUM", "cm2/m2", "square centimeter per square meter")}

# --- Sliding window (fracture inference engine) --------------------------------------------------
GAUSSIAN_SIGMA_SCALE = 0.125  # sigma = 0.125 x patch size, as nnU-Net and MONAI
BLEND_WEIGHT_FLOOR = 1e-3  # smallest blending weight at a patch's corners (MONAI's floor)
BODY_HU = -500.0  # "inside the body" for skipping patches (lungs are enclosed by tissue above this)
SKIP_CELL_VOXELS = 4  # block size of the bone/body grid that decides which patches to skip
CPU_BATCH_SIZE = 2  # 64^3 patches per forward on CPU: larger batches run slower per patch here
BF16_PROB_TOLERANCE = 1e-3  # uncalibrated checkpoints: bf16 on CPU only if probabilities stay this close to fp32
PRECISION_MIN_IOU = 0.9  # a calibrated faster precision must give each fp32 fracture back with this IoU ...
PRECISION_CONFIDENCE_TOLERANCE = 0.02  # ... and its confidence within this (and the same number of fractures)
REDUCED_PRECISION_MIN_SPEEDUP = 1.2  # `auto` keeps bf16/fp16/mixed only if its first batch runs this many times
# faster than fp32 (emulated bf16 is ~100x slower; native bf16 FracNet ~1.8x faster on an AVX512-BF16 EPYC): a
# near tie stays fp32, so `auto` does not flip between precisions from one run to the next

# --- Post-processing (FracNet's, in millimetres) ----------------------------------------------------
SPINE_MEDIAN_MM = 7.0  # FracNet's 10-pixel median filter at ~0.7 mm
SPINE_DISK_MM = 5.0  # FracNet's radius-7 disk at ~0.7 mm
SPINE_KEEP_FRACTION = 1.0 / 3.0  # keep projected-bone pixels above this fraction of the maximum
SUBMISSION_CSV = "ribfrac-pred.csv"
PROBABILITY_DIR = "probabilities"  # probability maps go in this sub-folder: the evaluator reads every .nii.gz beside the csv
MANIFEST_NAME = "ribfracseg-manifest.jsonl"  # one JSON line per case of a cohort run (RibFracSegLib.cohort)
L3_WALL_MAX_MM = 30.0  # the abdominal muscle wall is taken as at most this thick
L3_SPINE_MARGIN_MM = 10.0  # muscles this far in front of the vertebral body still count (psoas)
L3_VERTEBRA_HU = 150.0  # marrow of the vertebral body is above this (below BONE_HU): locates its centre
L3_EDGE_MM = 5.0  # a peak this close to the MIP's first/last row is not a maximum: L3 lies beyond the CT

# --- Input checks: what a CT in Hounsfield units looks like; what the reader refuses or warns about ----
CT_PADDING_HU = -1500.0  # at or below: padding outside the reconstruction circle (-2048, -3024), not air
CT_AIR_MAX_HU = -500.0  # a CT holds air (around the body, in the lungs) below this; none at all = not HU
MIN_CT_EXTENT_MM = 30.0  # a volume shorter than this on any axis cannot hold a rib with its surroundings
MAX_SLICE_SPACING_MM = 10.0  # coarser voxels than this: warn (thin ribs and fractures vanish)
CT_MODALITIES = ("CT",)  # DICOM Modality values read as CT (an empty Modality is accepted too)
SLICE_STEP_TOLERANCE = 0.1  # DICOM slice steps further than this fraction from the median are uneven
SLICE_GAP_FACTOR = 1.5  # ... and a step this many times the median means missing slices
GANTRY_TILT_TOLERANCE_DEG = 0.5  # larger angles between the slice normal and the slice stack: sheared
DICOM_GRID_TOLERANCE_VOXELS = 0.01  # a DICOM file of the series sits this near a slice of the CT read from it (SEG/SR)
WORKING_BYTES_PER_VOXEL = 16  # memory beyond the CT itself: probabilities, labels, masks, label scratch
CHECK_SAMPLE_VOXELS = 2_000_000  # intensity statistics are taken on an even subsample of about this size

# --- Rib centrelines from a label map -----------------------------------------------------------
CENTRELINE_STEP_MM = 1.0  # centreline sample spacing (and the smallest geodesic bin)

# --- Fractures: where and which (phantoms and simulation in real CTs) ---------------------------
FRACTURE_RIB_WEIGHT = (0.3, 0.6, 1, 1.2, 1.3, 1.3, 1.3, 1.2, 1.1, 0.9, 0.5, 0.3)  # ribs 1..12 (RibFrac)
FRACTURE_KIND_WEIGHT = {1: 0.3, 2: 0.35, 3: 0.2, 4: 0.15}  # displaced, non-displaced, buckle, segmental

# --- Fracture simulation in real CTs (RibFracSegLib.simulate) -----------------------------------
SIMULATION_FINE_MM = 0.35  # breaks are built on sub-voxels at most this size, then averaged
SIMULATION_FRAME_STEP_MM = 0.25  # centreline sampling for arc / foot-point look-ups
SIMULATION_TANGENT_SMOOTH_MM = 2.0  # the simulator's rib tangents: the centreline smoothed over this (sigma)
SIMULATION_HEAD_CLEAR_MM = 25.0  # no break closer to the rib head than this ...
SIMULATION_HEAD_FRACTION = 0.15  # ... nor than this part of the rib's length ...
SIMULATION_END_FRACTION = 0.85  # ... nor beyond this part of it (the frame network learned breaks in between)
SIMULATION_MIN_SEPARATION_MM = 30.0  # between breaks on one rib
SIMULATION_WINDOW_MM = 12.0  # along the rib, the cut plane decides the side; beyond, the arc does
SIMULATION_HOLD_MM = 8.0  # a displaced piece keeps its full offset this far from the break ...
SIMULATION_DECAY_MM = 22.0  # ... and is back in place this far (the far end of the rib is held)
SIMULATION_MARGIN_MM = 6.0  # beyond offsets: bulge, blur and label margin
SIMULATION_P_UNDEFINED = 0.1  # chance a fracture's code is recorded as -1, as in RibFrac
SIMULATION_EXTENT_MM = (3.5, 6.0)  # half-length of an annotation along the rib (phantom's sizes)
SIMULATION_LABEL_MARGIN_MM = 1.5  # annotation reaches this far beyond the bone (RibFrac-like blobs)
SIMULATION_RIB_REACH_MM = 12.0  # a rib's voxels lie within this of its centreline (annotation too)
FRAME_RIB_END_MARGIN_MM = SIMULATION_EXTENT_MM[1]  # a frame detection is a "rib end" only this far beyond the
#   breaks' support and from its trace's tips (`ribs.assign.at_rib_end`): a break's annotation reaches this far
SIMULATION_RIB_AREA_MM2 = (15.0, 250.0)  # a rib's bony cross-section at a break: smaller is a fragment of a
# mask, larger is not a rib (scapula, clavicle, vertebra mislabelled as one): no fracture there
SEGMENTAL_SPAN_MM = (16.0, 28.0)
SEGMENTAL_SHIFT_MM = (1.0, 2.5)
DISPLACED_SHIFT_MM = (1.0, 4.0)
DISPLACED_ANGULATION_DEG = (4.0, 12.0)
DISPLACED_GAP_MM = (1.0, 3.0)
CRACK_WIDTH_MM = (0.5, 1.0)
CRACK_PARTIAL_OFFSET_MM = (-1.0, 1.5)  # a partial crack stops this far from the rib's centreline
CUT_TILT_DEG = {1: (15.0, 40.0), 2: (0.0, 30.0), 4: (10.0, 35.0)}  # break plane vs the rib's cross-section
FRACTURE_LINE_JAG_MM = (0.2, 0.6)  # a break's surface is rough: offset amplitude from its plane ...
FRACTURE_LINE_WAVELENGTHS_MM = (2.2, 3.0, 4.5)  # ... as three waves across the plane
BUCKLE_BUMP_MM = (1.0, 2.0)  # outward fold of the cortex
BUCKLE_WIDTH_MM = 2.5  # along the rib (Gaussian 1/e half-width)
BUCKLE_RAMP_MM = 2.0  # across the rib, the fold grows from the centreline to full over this
BUCKLE_SCLEROSIS_HU = (100.0, 250.0)  # added to the bone in a band across the fold
BUCKLE_SCLEROSIS_MM = 1.5  # band half-width
BONE_EXCESS_FULL_HU = 150.0  # a rib voxel this far above soft tissue counts as all bone
SOFT_TISSUE_HU = (-100.0, 150.0)  # voxels around the rib in this range give the gap's fill HU ...
SOFT_FILL_CLIP_HU = (0.0, 80.0)  # ... clipped to haematoma-like values
SOFT_FILL_SHELL_MM = (1.0, 4.0)  # the shell around the rib that gives the fill
NOISE_AWAY_FROM_BONE_MM = 3.0  # local noise is measured on soft tissue at least this far from the rib
PSF_SIGMA_VOXELS = 0.35  # extra blur of the change beyond the voxel box (scanner PSF)
NOISE_CORRELATION_VOXELS = 0.6  # Gaussian correlation of the added noise

# --- Rib frame: each rib straightened into its own volume (RibFracSegLib.ribs.frame) -----------
RIB_FRAME_VOXEL_MM = 0.6  # voxel of a straightened rib, along the arc and across (0.5-0.7 mm: a cortex is about 1 mm)
RIB_FRAME_HALF_MM = 15.0  # sections reach this far from the centreline on both cross axes (a rib is 10-15 mm high)
RIB_FRAME_SMOOTH_MM = 5.0  # Gaussian sigma along the centreline: the frame follows the rib, not a break's step
RIB_FRAME_END_MM = 5.0  # the frame runs on this far beyond both ends of the centreline (traced ribs stop short)
RIB_FRAME_TURN_SMOOTH_MM = 40.0  # the untwisted frame turns towards "outward" as smoothed over this arc (sigma);
#   LIDC-IDRI-0001: at most 0.7 degrees per section, u within 31 degrees of outward (None: no twist, up to 80 off)
RIB_FRAME_OUTWARD_MIN = 0.5  # "outward" (away from the body's axis, across the rib) counts where this much of it
#   is across the rib: not on the neck, which runs nearly straight away from the axis

# --- A detection measured in its rib's frame (RibFracSegLib.ribs.frame_measure); thresholds chosen on
# fractures simulated into LIDC-IDRI-0001 and phantoms (benchmarks/bench_frame_types.py), never LIDC-IDRI-0314
FRAME_MEASURE_HALF_MM = 32.0  # arc sampled either side of a detection: a segmental partner lies 16-28 mm away
FRAME_MEASURE_LINE_SMOOTH_MM = 10.0  # the measuring frame's centreline smoothing (sigma): a traced line bends at a break less
FRAME_MEASURE_TUBE_MM = 11.0  # bone this far from the centreline is the rib's (a shifted piece stays inside)
FRAME_MEASURE_CORE_MM = 4.0  # ... when its component reaches this close to the centreline (not a neighbour rib)
FRAME_MEASURE_BONE_HU = 250.0  # bone, after a Gaussian of FRAME_MEASURE_SMOOTH_MM
FRAME_MEASURE_SMOOTH_MM = 0.6
FRAME_MEASURE_ARC_REACH_MM = 1.5  # bone's mass is read this far along the arc beyond it (partial volume at a gap's faces)
FRAME_MEASURE_MIN_BONE = 0.2  # sections with less than this share of the stretch's median mass hold no rib (its end)
FRAME_MEASURE_LEVEL_MM = 15.0  # the rib's own mass level: running median over this arc (a dip is shorter)
FRAME_BREAK_MIN_DEFICIT = 0.15  # a break: the section mass falls this far below the level somewhere ...
FRAME_BREAK_EDGE_DEFICIT = 0.05  # ... its dip runs while the deficit stays above this
FRAME_BREAK_MIN_GAP_MM = 0.4  # ... and its integrated gap is at least this ...
FRAME_BREAK_MAX_GAP_MM = 8.0  # ... and at most this (longer: a rib's trace or bone missing, e.g. rib 1 under the clavicle)
FRAME_BREAK_NEAR_MM = 8.0  # a break belongs to the detection when its dip comes this close to the detection's centre
FRAME_FIT_MM = 8.0  # centroid lines are fitted over this arc beyond each side of a dip ...
FRAME_FIT_GUARD_MM = 1.2  # ... leaving this much next to the dip out (those sections hold both pieces)
FRAME_FLANK_MAX_EXCESS = 0.1  # a dip's level is read on flank sections with at most this much excess bone (not a fold)
FRAME_FIT_MIN_SECTIONS = 4
FRAME_SEGMENTAL_MAX_MM = 30.0  # two breaks this close on one rib are one segmental fracture ...
FRAME_SEGMENTAL_MIN_GAP_MM = 1.2  # ... the second one a clear break: this gap (real ribs dip by up to ~1 mm where intact) ...
FRAME_SEGMENTAL_MIN_DEFICIT = 0.35  # ... and this deep (intact dips on LIDC-IDRI-0001 reach 0.27)
FRAME_DISPLACED_STEP_MM = 1.2  # a break is displaced from this step-off (of the 17 cracks found on the
#   calibration copies, 0.8 typed 3 displaced, at steps 0.88-1.5; a displaced break on the test phantom reads 1.5) ...
FRAME_DISPLACED_ANGLE_DEG = 25.0  # ... or this angulation (intact and cracked ribs read up to ~19 degrees: noise) ...
FRAME_DISPLACED_GAP_MM = 2.0  # ... or this gap (cracks read up to 1.72 there, displaced breaks from 1.9;
#   simulated cracks are 0.5-1.1 mm wide, displaced gaps 1-3 mm, phantoms' 2-3.5)
FRAME_BULGE_NEAR_MM = 4.0  # a fold is looked for this close to the detection's centre (a buckle is ~5 mm long)
FRAME_BUCKLE_BULGE = 0.25  # no break, and this much more bone locally: a buckle's fold (cracks read up to 0.23)
FRAME_BUCKLE_STRONG_BULGE = 0.45  # a buckle even beside a dip (buckles read 0.3-1.2, single breaks up to 0.36)

# --- Training in the rib frame (RibFracSegLib.training.frame_dataset / frame_train) --------------
FRAME_WINDOW = (64, 48, 48)  # (arc, u, v) voxels a frame network sees: 38 mm of rib, the centre 48 of 51 across
FRAME_HELD_OUT = ("LIDC-IDRI-0314",)  # issue 24's held-out real chest CT: never a frame training source
FRAME_REAL_SEEDS = (0, 1, 2)  # simulated copies of each real CT (fractures differ per seed)
FRAME_REAL_FRACTURES = 8  # fractures simulated into each copy, the four RibFrac types in turn
FRAME_CALIBRATION_SEEDS = (100, 101)  # `calibrate-frame`: simulated copies per real CT, seeds training never used
FRAME_CALIBRATION_MAX_FP = 0.5  # `calibrate-frame`: false positives allowed per fracture-free real scan (issue 24: <= 1 held out)
FRAME_FALLBACK_MAX_FP = 0.34  # `calibrate-frame`: the fallback's own false positives allowed per fracture-free real scan
#   (its classifier floor: 2 of the 6 training free CTs). frame4 step 5567: 12 fallback FP on them at the classifier's
#   own 0.75 (probabilities 0.756-0.968: unfound lateral ribs, aorta); 0.5 (3 of 6) until 2026-12-07, when the held-out
#   0314's 4 frame FP left the 7 real CTs' mean over issue 24's 1 (recall on the 92 calibration breaks 0.848 -> 0.837)
FRAME_TRAIN_END_MM = 32.0  # training frames run on this far past both traced ends: an end window (centre within
#   FRAME_END_JITTER_MM of the end) then holds the real tissue beyond the tip that inference windows hold (they reach
#   RIB_FRAME_INFERENCE_END_MM past it), never the flat padding beyond a frame (with 5 mm, 5 of the 6 unmatched
#   detections >= 0.7 on a held-out copy sat on costochondral tips, seen in training only beside padding)
FRAME_END_JITTER_MM = 12.0  # an end window's centre moves up to this along the arc (the last inference window's
#   centre lies ~10 mm inside the traced end)
FRAME_CROSSING_MM = 12.0  # a section whose centre is this close to another rib's centreline is a "crossing"
FRAME_FOREIGN_BONE_MM = 9.0  # bone in a section beyond this from the centreline is another structure ...
FRAME_FOREIGN_BONE_SHARE = 0.03  # ... and a section with this share of such pixels is a "crossing" too
FRAME_OWN_FRACTURE_MM = 8.0  # a fracture piece centred this close to the frame's centreline is its rib's own
#   (farther: a neighbour rib's break at the section's edge, labelled but not a positive window's centre)

# --- Rib-unfolded view (RibFracSegLib.ribs.unfold / .qc) ----------------------------------------
UNFOLD_PIXEL_MM = 0.5  # fixed size of an unfolded pixel, along and across the rib
UNFOLD_HALF_ACROSS_MM = 15.0  # strip reaches this far above and below the centreline (ribs are 10-15 mm high)
UNFOLD_SLAB_HALF_MM = 4.0  # slab through the rib's thickness (5-8 mm) summarised per pixel
UNFOLD_SLAB_STEP_MM = 1.0  # sample spacing through the slab
UNFOLD_SUMMARY = "max"  # "max" (MIP: cortex and breaks stand out) or "mean"
UNFOLD_FRAME_SMOOTH_MM = 5.0  # Gaussian smoothing of the tangent, so a jagged centreline gives a calm frame
UNFOLD_MAX_RIB_MM = 450.0  # longer centrelines are cut here (a bad centreline must not blow up the picture)
UNFOLD_ROW_GAP_PX = 4  # blank pixels between two ribs' strips
UNFOLD_GUTTER_MM = 40.0  # blank band at the spine between the right and left halves (rib labels go here)
UNFOLD_WINDOW_HU = (-200.0, 1200.0)  # grey window of the unfolded PNG (bone)
UNFOLD_MIN_BOX_MM = 8.0  # smallest side of a fracture's box on the unfolded picture
UNFOLD_SLICER_PLANE_A_MM = 5000.0  # the unfolded picture's plane in Slicer's world: far anterior, clear of any CT
UNFOLD_SLICER_VIEW = "RibUnfolded"  # layout name of the slice view that shows the picture in Slicer
UNFOLD_SLICER_LAYOUT_ID = 5016  # our layout (picture on top, CT axial/sagittal/coronal below); Slicer's own ids are < 500

# --- Vertebral bodies along the spine track, named by counting from landmarks (spine/) ---------
SPINE_WORK_SLICE_MM = 2.5  # the count's working slices are no finer than this (LIDC-IDRI-0001's 2.5 mm resolve its T1-T3 discs)
SPINE_CENTRE_SEARCH_MM = 30.0  # the body's centre is the deepest bone within this of the spine track
SPINE_PROFILE_RADIUS_MM = 8.0  # the profile is the mean HU within this of the vertebral body's centre
SPINE_TRACK_MEDIAN_MM = 25.0  # the column's direction: body centres median-filtered over this first (centres jump at some discs)
SPINE_TRACK_SPLINE_LAMBDA = 3e3  # smoothing of the spine track's splines (mm): bends over ~10 mm follow, slice jitter does not
SPINE_LEAN_SLICES = 1.0  # the profile's disc is taken across the column where an axial one would reach this many slices up/down
SPINE_PROFILE_HU = (-100.0, 1000.0)  # HU clipped to this before averaging (air, metal)
SPINE_MARROW_WINDOW_MM = 25.0  # running median over this = the local marrow level (bodies are most of the column; 30 mm merged LIDC-IDRI-0001 T1-T3)
SPINE_CANAL_HU = 40.0  # the spinal canal (fluid) is below this once smoothed, a fatty vertebral body's marrow above
SPINE_CANAL_SMOOTH_MM = 1.5  # Gaussian sigma (in-plane) before the canal test
SPINE_DISC_SMOOTH_MM = 3.0  # Gaussian sigma of the disc-ness profile: merges a disc with its two endplates
SPINE_MINOR_SIDE = 0.5  # weight of departures on the side opposite to the discs' (see spine.bodies.disc_profile)
SPINE_MIN_BODY_MM = 13.0  # discs closer than this belong to one body (upper thoracic on a real CT: 15-17 mm body + disc)
SPINE_MIN_BODY_WIDTH_RATIO = 0.55  # ... nor lower than this times the body's width (real T1-L5: 0.6-0.95; half bodies of a contrast CT: 0.45)
SPINE_WIDTH_FRONT_MM = 4.0  # ... measured on the centre row and on this far in front of it (the shorter: rib heads, aorta)
SPINE_WIDTH_MEDIAN_MM = 30.0  # the body's width is a running median over this (disc slices have none)
SPINE_MAX_BODY_MM = 50.0  # ... and farther apart than this hide a missed disc (L5 body + disc ~ 45 mm)
SPINE_CANDIDATE_PROMINENCE = 0.05  # disc candidates stand out by this share of the profile's 90th percentile
SPINE_REGULARITY = 3.0  # penalty per squared log-ratio of neighbouring bodies' heights
SPINE_MAX_HEIGHT_RATIO = 1.4  # neighbouring bodies (with their discs) never differ in height more than this
SPINE_ODD_BODY = 1.4  # a body taller (or shorter) than this times its neighbours' median stops the count
SPINE_SACRUM_WIDTH_MM = 75.0  # bone at the body's antero-posterior level wider than this is the sacrum
SPINE_SACRUM_MIN_MM = 12.0  # ... over at least this height below the lowest disc
SPINE_SACRUM_BAND_MM = 4.0  # ... measured within this of the body's antero-posterior centre
SPINE_SACRUM_GAP_MM = 6.0  # ... gaps narrower than this (foramina, sacroiliac joints) bridged
SPINE_SACRUM_BRIDGE_MM = 6.0  # ... and runs of such slices this far apart joined (a foramen's, a tilted CT's slice)
SPINE_SACRUM_OPEN_MM = 6.0  # ... after an opening this wide (the width is read at the body's level: no ribs there)
SPINE_SACRUM_REACH_MM = 150.0  # ... measured this far left and right of the column at most
SPINE_SACRUM_SIDE_SHARE = 0.6  # ... reaching at least this share of half that width to each side (crests: one side)
SPINE_SACRUM_SEED_MM = 60.0  # spine.sacrum follows the column down from the track's highest this many mm of bodies
SPINE_SACRUM_STEP_MM = 20.0  # ... taking on each slice the bone whose front is within this of the last front
SPINE_SACRUM_LOST_MM = 20.0  # ... and, finding none over this height (more than a disc), starts again from the track
SPINE_SACRUM_BODY_MIN_MM = 28.0  # ... and at least this wide over its front SPINE_SACRUM_FRONT_MM (a body, not
SPINE_SACRUM_FRONT_MM = 15.0  # the aorta in front of it: 3Dircadb1.1's T10-T11 bodies 31-39 mm, its aorta 19-21 mm)
SPINE_SACRUM_AXIS_MM = 6.0  # the column's axis: a strip (and a disk on it) this far either side of its centre
SPINE_SACRUM_PLATE_MM = 25.0  # the L5/S1 disc is looked for on the axis within this of where the sacrum widens
SPINE_SACRUM_ABOVE_MM = 40.0  # ... and a vertebral body on the column within this above the endplate
SPINE_SACRUM_SURE_MM = 30.0  # a wide run this tall is sure (confidence 1; less scales down)
SPINE_SACRUM_MIN_CONFIDENCE = 0.5  # spine.levels counts from the sacrum found at least this surely
SPINE_RIB_HEAD_ON_BODY = 0.75  # ribs 1, 10-12 meet Tk on its upper half (LIDC-IDRI-0001: 0.45-0.8; ribs 2-9: at its top disc)
SPINE_RIB_AGREE_BODIES = 0.5  # a rib head within this many bodies of where the count puts it agrees with the count
SPINE_RIB_DRIFT_BODIES = 0.75  # the ribs at and above a level off the count by this (median): a disc missed or doubled there
SPINE_RIB_BELOW_BODIES = 1.5  # a lowest-level rib head this many bodies below T12 voids the count (LIDC-0001: <= 0.5)
SPINE_RIB_SIDES_APART = 0.75  # left and right ribs' median T12 this many bodies apart: a side is misnumbered
SPINE_RIB_HEAD_MAX_MM = 45.0  # a rib head lies within this (axial plane) of its vertebral body centre
SPINE_RIB_MAJORITY = 0.5  # the ribs' count is used when more than this share of numbered ribs agree with it
SPINE_RIB_COUNT_LEVELS = 5  # T12 from the heads of the lowest this many rib levels (the rest check the bodies above)
SPINE_FEW_HEADS = 10  # fewer numbered rib heads from the box than this and no count: l3 retries on segment_ribs
SPINE_RIB_MIN_VOTES = 2  # the ribs name the column only when at least this many numbered heads vote (one lone head: no)
SPINE_RIB_SIDE_MIN = 3  # a side with this many voting ribs must agree with the other side on T12
L3_AGREE_FRACTION = 0.5  # count and network agree within this share of L3's height (body + disc)
SPINE_DISC_FLOOR = -0.3  # a disc candidate adds its strength (share of the 90th percentile) less this
SPINE_LONE_DISC = 0.5  # a disc with no partner in reach stands at least this share of the profile's 90th percentile
SPINE_EDGE_MM = 7.0  # disc candidates this close to the CT's first/last slice are edge effects (smoothing); 8 missed LIDC-IDRI-0001's C6/C7 disc at 7.5 mm

# --- Candidate classifier (second stage: fracture or not, and which type; RibFracSegLib.candidates) ---
CANDIDATE_CROP_VOXELS = 32  # the classifier sees a cube of this many voxels ...
CANDIDATE_CROP_MM = 1.25  # ... of this size (40 mm: a segmental fracture's two breaks and their rib)
CANDIDATE_STORE_VOXELS = 40  # training crops are stored larger and cut at random offsets (+-5 mm)
CANDIDATE_CLASSES = 5  # 0 not a fracture, 1..4 the RibFrac codes
CANDIDATE_MIN_TYPE_PROBABILITY = 0.4  # below this the classifier abstains on the type (code -1)
CANDIDATE_BATCH = 64  # crops per forward at inference

# --- Detection in the rib frame (RibFracSegLib.frame_inference) -----------------------------------
FRAME_MIN_PROBABILITY = 1e-3  # frame and fallback probabilities below this are written as 0 (far below any
#   threshold): the write-back then visits only sections holding more (about 2-5 s a rib on this CPU when all write)
RIB_FRAME_OVERLAP = 0.25  # windows' overlap along a rib's arc (a checkpoint's inference["frame_overlap"] overrides):
#   LIDC-IDRI-0001, frame8 in bf16: 192 windows 4.2 s against 270 windows 5.9 s at 0.5 (bench_frame_speed);
#   stride 48 of 64 sections leaves every point >= 8 sections (4.8 mm) from some window's end
FRAME_RELOOK_FROM = 0.0  # a window is added centred on a blended peak from this level that no window holds in its centre
#   (`frame_windows.relook_windows`; a checkpoint's inference["frame_relook_from"] overrides; 0: never)
FRAME_RELOOK_CENTRAL = 0.25  # ... "in its centre": this share of the window (16 of 64 sections) from both its ends
RIB_FRAME_INFERENCE_END_MM = 9.0  # at inference frames run on this far past both traced ends (a checkpoint's
#   inference["frame_end_mm"] overrides; training frames run FRAME_TRAIN_END_MM): with 5 mm, LIDC-IDRI-0314 left 565 mm^3
#   of rib-labelled bone in no frame, all 26 pieces within 2.9 mm past a frame's end (19 rib heads, 7 anterior ends;
#   107 fallback patches); with 9 mm none (bench_frame_speed --fallback); +3.7% sections, ~9 frame windows
FRAME_CONFIDENCE = "peak"  # a frame detection's first-stage confidence: its highest probability ("peak") or the mean
#   over its voxels ("mean", FracNet's, which the fallback keeps); a checkpoint's inference["confidence"] overrides
#   (calibrate-frame writes it). frame3 step 5654 on the calibration CTs (6 free, 12 copies, 92 fractures): at <= 0.5
#   frame FP per free scan, recall 0.663 by peak, 0.207 by mean (out/conf_eval; the means crowd into 0.78-0.84)
FRAME_ODDS_CLIP = 1e-6  # `frame_inference.floor_odds` reads a confidence and a floor clipped to [this, 1 - this] (logit)
FALLBACK_CORE_MARGIN = 0.25  # the fallback's windows (`window_cover.cover_windows`) hold every uncovered voxel this
#   share of the patch (16 of 64 voxels) from their faces: the context a 0.5-overlap grid guarantees

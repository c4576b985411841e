"""One page per case that a person reads in one look: `<case>-report.html`.

Self-contained on purpose — pictures are PNG data URIs, the style is inline, there is no script and
no external address — so it opens offline in any browser, survives being mailed or archived beside
the study, and prints. It shows what the other outputs hold, drawn by their own writers: the
unfolded ribs beside the frontal and posterior views of the cage with numbered boxes (`ribs.qc`),
the fracture table, the L3 slice with its tissue masks (`l3.overlay`) and the body-composition
table, then the input's geometry, the model and version, the time taken and every warning.
"""

from __future__ import annotations

import base64
import datetime
import io
from html import escape
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .detections import Detection, FractureResult, fracture_text, type_legend
from .io import write_text
from .provenance import TOOL_NAME, ModelInfo

STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1400px;padding:0 16px;color:#1b1b1f;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ccd;padding-bottom:3px}
.meta{color:#555}.research{background:#fff4d6;border:1px solid #e8c66a;padding:6px 10px;margin:12px 0}
.warn{background:#fde8e8;border:1px solid #e6a1a1;padding:6px 10px;margin:6px 0}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #ccd;padding:3px 8px;text-align:left}
th{background:#eef0f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;border:1px solid #ccd;background:#000}figure{margin:8px 0}
figcaption{color:#555;font-size:13px;margin-top:4px}.cols{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}img{max-height:95vh}}
"""


def png_data_uri(picture) -> str:
    """A PIL image as a `data:image/png;base64,...` URI (embedded, never a file beside the page)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(header: Optional[Sequence[str]], rows: Iterable[Sequence], numeric: Sequence[bool] = ()) -> str:
    """An HTML table (header None: none); `numeric` columns are right-aligned."""
    rows = list(rows)
    width = len(header) if header else max((len(r) for r in rows), default=0)
    numeric = list(numeric) + [False] * (width - len(numeric))
    head = "" if not header else "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f'<td{" class=n" if n else ""}>{escape(str(v))}</td>' for v, n in zip(row, numeric))
                   + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _figure(picture, caption: str, alt: str) -> str:
    return (f'<figure><img src="{png_data_uri(picture)}" alt="{escape(alt)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def size_mm(d: Detection, spacing: Sequence[float]) -> str:
    """The detection's bounding box in mm, largest side first: '14 x 9 x 6'."""
    sides = sorted(((hi - lo + 1) * s for lo, hi, s in zip(*d.bbox_ijk, spacing)), reverse=True)
    return " x ".join(f"{v:.0f}" for v in sides)


def fracture_rows(detections: Sequence[Detection], spacing: Sequence[float]) -> list[tuple]:
    from .ribs.assign import rib_phrase

    return [(d.id, rib_phrase(d.rib, d.rib_region), fracture_text(d),
             f"{d.confidence:.2f}", f"{d.volume_mm3:.0f}", size_mm(d, spacing),
             ", ".join(f"{v:.1f}" for v in d.center_ras)) for d in detections]


def _ribs_section(image: sitk.Image, result: FractureResult, case: str) -> str:
    from .ribs.qc import cage_picture, unfolded_picture
    from .ribs.unfold import unfold_ribs
    from .ribs.unfold_marks import map_detections

    ribs = result.ribs
    if ribs is None or not ribs.ribs:
        why = "the rib step did not run" if ribs is None else "no rib was found"
        return f"<p>No rib pictures: {why} (slices or pixels too coarse, or no ribs in view).</p>"
    unfolded = unfold_ribs(image, ribs)
    marks = map_detections(unfolded, result.detections, image)
    flat = unfolded_picture(unfolded, marks, title=case)
    found = ribs.to_dict()["ribs_found"]
    flat_caption = (f"Every rib straightened: the patient's right ribs on the left half, heads at the spine in the "
                    f"middle, rib 1 on top; a red row is a rib not found. Boxes are the numbered fractures of the table; "
                    f"letters give the type ({type_legend()}). Ribs found: {found['L']} left, {found['R']} right, "
                    f"numbered from {ribs.numbering}.")
    cage_caption = "The rib cage from the front and from behind, each rib coloured and numbered, with the same boxes."
    notes = "".join(f"<p class=meta>Rib step: {escape(n)}</p>" for n in ribs.notes)
    return (_figure(flat, flat_caption, "unfolded ribs with numbered fracture boxes")
            + _figure(cage_picture(image, ribs, result.detections, marks), cage_caption,
                      "rib cage, frontal and posterior, with numbered fracture boxes") + notes)


def _l3_section(l3, body) -> str:
    from .l3.body_composition import TISSUE_TITLES, TISSUE_NAMES
    from .l3.overlay import overlay_picture

    if l3 is None:
        return "<p>L3 was not asked for (segment --l3, or the panel's L3 option).</p>"
    review = f'<p class=warn>Review L3: {escape(l3.review_reason)}</p>' if l3.review else ""
    if not l3.in_view or body is None:
        return review + "<p>L3 is not in the field of view: no body composition.</p>"
    rows = [("L3 slice", f"index {l3.slice_index}, z {l3.z_mm:.1f} mm", ""),
            ("placed by", l3.source + (f" (count from {l3.count_anchor})" if "count" in l3.source else ""), "")]
    rows += [(TISSUE_TITLES[t], "not measured" if getattr(body, f"{n}_cm2") is None
              else f"{getattr(body, f'{n}_cm2'):.1f}", "cm²") for t, n in TISSUE_NAMES.items()]
    rows.append(("Skeletal muscle index (SMI)", "height not given" if body.smi is None else f"{body.smi:.1f}",
                 "cm²/m²" + ("" if body.height_m is None else f" (height {body.height_m:.2f} m)")))
    caption = "The L3 slice: skeletal muscle red, subcutaneous fat yellow, visceral fat green, intermuscular fat blue."
    return review + ("<div class=cols>" + _figure(overlay_picture(body), caption, "L3 slice with tissue masks")
                     + _table(("measure", "value", "unit"), rows, (False, True)) + "</div>")


def orientation(image: sitk.Image) -> str:
    """'LPS' (the axis codes of the index directions), with '(oblique)' when the axes are tilted."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    return code + (" (oblique)" if np.abs(np.abs(direction).max(axis=0) - 1).max() > 1e-3 else "")


def _run_section(image: sitk.Image, result: FractureResult, model: ModelInfo, source: Optional[str],
                 outputs: dict[str, str]) -> str:
    size, spacing, origin = image.GetSize(), image.GetSpacing(), image.GetOrigin()
    rows = [("input", source or "(in memory)"),
            ("grid", f"{' x '.join(map(str, size))} voxels, {' x '.join(f'{s:.3g}' for s in spacing)} mm"),
            ("orientation", orientation(image)), ("origin (LPS mm)", ", ".join(f"{v:.1f}" for v in origin)),
            ("model", model.text()), ("device", result.device),
            ("patches", f"{result.patches_total - result.patches_skipped} of {result.patches_total} computed "
                        f"(skip rule: {result.skip_rule})"),
            ("time", ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items()))]
    rows += [(f"file: {kind}", name) for kind, name in outputs.items()]
    return _table(None, rows)


def case_report_html(image: sitk.Image, result: FractureResult, case: str, *, model: ModelInfo,
                     source: Optional[str] = None, warnings: Sequence[str] = (), l3=None, body=None,
                     outputs: Optional[dict[str, str]] = None, created: Optional[datetime.datetime] = None) -> str:
    """The page as one HTML string (see the module docstring)."""
    created = created or datetime.datetime.now().astimezone()
    n = len(result.detections)
    warned = "".join(f"<p class=warn>Warning: {escape(w)}</p>" for w in warnings)
    table = (_table(("#", "rib", "type", "confidence", "volume mm³", "size mm", "centre RAS mm"),
                    fracture_rows(result.detections, image.GetSpacing()), (True, False, False, True, True, True, True))
             if n else "<p>No fracture detected.</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(case)} - {TOOL_NAME} report</title><style>{STYLE}</style></head><body>
<h1>Rib fractures: {escape(case)}</h1>
<p class=meta>{n} fracture{"" if n == 1 else "s"} detected &middot; {escape(model.text())} &middot;
{escape(created.strftime("%Y-%m-%d %H:%M %Z").strip())}</p>
<p class=research>For research only: found by a model, not read by a radiologist. Check every finding on the CT.</p>
{warned}
<h2>Ribs and fractures</h2>
{_ribs_section(image, result, case)}
{table}
<h2>L3 and body composition</h2>
{_l3_section(l3, body)}
<h2>Input and run</h2>
{_run_section(image, result, model, source, outputs or {})}
</body></html>
"""


def write_case_report(path: str | Path, image: sitk.Image, result: FractureResult, case: str, **fields) -> Path:
    """`case_report_html` written atomically to `path`."""
    return write_text(case_report_html(image, result, case, **fields), path)

"""Audit: a finished run looks at an image folder: duplicate pairs, outliers, unreadable files, a projector export,
and a few-label mode that names every image from a handful of examples per class.

The page lays out components and calls ``sslcore.audit``, ``sslcore.export`` and ``sslcore.labeling``; it never
writes into the audited folder (reports and exports go to a temporary folder offered for download).
"""
from __future__ import annotations

import os
import shutil
import tempfile

import gradio as gr
import numpy as np

from pages.common import AppContext, message_html, refreshed_runs, reports_errors, run_dropdown, upload_name
from sslcore import audit, export, labeling
from sslcore.data import DataError, decode_image
from sslcore.preview import enlarge

TITLE = "Audit"
SHOWN = 96              # gallery pixels per image
PAIR_GAP = 12           # transparent pixels between the two images of a pair
MARGIN = 8              # transparent pixels at least around the pictures of a gallery item
CAPTION_BAND = 40       # transparent pixels below them, where the gallery draws the caption
SHOWN_PAIRS = 48
SHOWN_OUTLIERS = 48
SHOWN_LABELS = 60
SLIDER_FLOOR = 0.8      # pairs down to this similarity are kept, so the slider re-filters without searching again
GALLERIES = ("audit-pairs", "audit-outliers", "audit-labelled")

# Gradio 6.31's gallery draws its label over the first row (the grid's "pt-6" class has no CSS) and cuts a caption
# at 80% of the cell on one line: these galleries leave the label a strip of its own and let a caption (the file
# names) wrap in the band that framed() keeps free below the pictures.
HEAD = ("<style>\n"
        + ", ".join(f"#{name} .grid-container" for name in GALLERIES) + " { padding-top: 30px; }\n"
        + ", ".join(f"#{name} .caption-label" for name in GALLERIES)
        + " { max-width: calc(100% - 2 * var(--block-label-margin)); white-space: normal; overflow-wrap: anywhere; }\n"
        + "</style>")


# ---------------------------------------------------------------------------------------------- what the events do


def resolve_folder(run_path, folder: str | None) -> str:
    """The typed folder, or the run's own data when that is a folder."""
    if folder and folder.strip():
        return export.folder_path(folder.strip())
    own = export.run_folder(run_path)
    if own is None:
        raise ValueError("Type the path of the image folder to audit (this run was not trained on a folder)")
    return own


def thumbnail(root: str, path: str) -> np.ndarray:
    try:
        return decode_image(os.path.join(root, path), SHOWN)
    except DataError:
        return np.full((SHOWN, SHOWN, 3), 200, np.uint8)


def framed(*images: np.ndarray) -> np.ndarray:
    """SHOWN-pixel thumbnails side by side on a transparent square canvas (RGBA), the same size for every item.

    A gallery cell is a square and its caption is drawn over the cell's bottom: the canvas is square too (a pair
    is not stretched or cropped), keeps CAPTION_BAND free below the pictures for the caption, and its transparent
    margins and gap show the cell's own background.
    """
    row = len(images) * SHOWN + (len(images) - 1) * PAIR_GAP
    side = max(row + 2 * MARGIN, SHOWN + 2 * MARGIN + CAPTION_BAND)
    canvas = np.zeros((side, side, 4), np.uint8)
    top, left = (side - CAPTION_BAND - SHOWN) // 2, (side - row) // 2
    for image in images:
        canvas[top:top + SHOWN, left:left + SHOWN, :3] = image[..., :3]
        canvas[top:top + SHOWN, left:left + SHOWN, 3] = 255
        left += SHOWN + PAIR_GAP
    return canvas


def pair_gallery(report: audit.AuditReport, threshold: float) -> list[tuple[np.ndarray, str]]:
    """Each pair side by side with its similarity: exact copies first, then most similar first."""
    return [(framed(thumbnail(report.root, pair.a), thumbnail(report.root, pair.b)),
             f"{'exact copy' if pair.exact else f'{pair.similarity:.3f}'} · {pair.a} ↔ {pair.b}")
            for pair in report.pairs_above(threshold)[:SHOWN_PAIRS]]


def outlier_gallery(report: audit.AuditReport) -> list[tuple[np.ndarray, str]]:
    return [(framed(thumbnail(report.root, path)), f"#{rank + 1} · {score:.3f} · {path}")
            for rank, (path, score) in enumerate(report.outliers[:SHOWN_OUTLIERS])]


def summary_text(report: audit.AuditReport, threshold: float) -> str:
    pairs = report.pairs_above(threshold)
    exact = sum(pair.exact for pair in pairs)
    return (f"{report.images} images in {report.root}: {exact} exact copies, {len(pairs) - exact} near-duplicate pairs "
            f"at similarity ≥ {threshold:.2f}, {len(report.unreadable)} unreadable file(s). "
            f"Most outlying: {', '.join(path for path, _ in report.outliers[:3])}.")


def run_audit(run_path, folder: str | None, threshold: float) -> tuple[audit.AuditReport, str]:
    """Audit into a fresh temporary folder (CSV downloads); keeps pairs down to SLIDER_FLOOR for the slider."""
    out = tempfile.mkdtemp(prefix="sslcore-audit-")
    report = audit.audit_folder(run_path, resolve_folder(run_path, folder), out, threshold=float(threshold),
                                candidate_floor=SLIDER_FLOOR)
    return report, out


def run_export(run_path, folder: str | None) -> tuple[str, dict]:
    """Projector files for the folder, zipped for download."""
    out = tempfile.mkdtemp(prefix="sslcore-projector-")
    summary = export.export_folder(run_path, resolve_folder(run_path, folder), os.path.join(out, "projector"))
    archive = shutil.make_archive(os.path.join(out, "projector"), "zip", root_dir=os.path.join(out, "projector"))
    return archive, summary


def run_labels(run_path, folder: str | None, examples_folder: str | None, example_files, image_files, method: str):
    """Few-label classification: examples from a folder (one subfolder per class) or from files named CLASS_x.png;
    images from uploads, or else the audited folder. Returns the result and the CSV written."""
    if examples_folder and examples_folder.strip():
        examples = export.folder_path(examples_folder.strip())
    elif example_files:
        examples = labeling.examples_by_file_name(list(example_files), [upload_name(f) for f in example_files])
    else:
        raise ValueError("Give examples: a folder with one subfolder per class, or upload files named CLASS_anything.png")
    images = [str(f) for f in image_files] if image_files else resolve_folder(run_path, folder)
    result = labeling.label_images(run_path, images, examples=examples, method=method)
    out = os.path.join(tempfile.mkdtemp(prefix="sslcore-labels-"), "labels.csv")
    labeling.write_labels_csv(out, result)
    return result, out


# ---------------------------------------------------------------------------------------------- the page


def thumbnail_gallery(label: str, elem_id: str, columns: int, height: int) -> gr.Gallery:
    """A grid of square thumbnails with captions, whatever the number of items.

    fit_columns=False: Gradio otherwise widens the columns to the number of items, so a single item filled the
    whole width as one square cell, taller than the box and cut off at its bottom. preview=False and no
    selected_index: nothing opens enlarged until the user clicks it (allow_preview).
    """
    return gr.Gallery(label=label, columns=columns, height=height, fit_columns=False, preview=False,
                      allow_preview=True, selected_index=None, object_fit="contain", format="png", elem_id=elem_id)


def build(context: AppContext, tab: gr.Tab) -> None:
    gr.Markdown("Find exact copies, near-duplicates (crops, resizes, re-compressed JPEGs, mirror images, brightness "
                "changes) and outliers in an image folder, judged by a finished run's encoder. The folder is only "
                "read: reports and exports are offered for download.")
    with gr.Row():
        run = run_dropdown("Finished run", elem_id="audit-run", scale=2)
        folder = gr.Textbox("", label="Image folder", placeholder="/path/to/images — empty: the run's own folder",
                            elem_id="audit-folder", scale=3)
    with gr.Row():
        threshold = gr.Slider(SLIDER_FLOOR, 1.0, audit.DEFAULT_THRESHOLD, step=0.005, scale=3, elem_id="audit-threshold",
                              label="Near-duplicate threshold (whitened cosine similarity)")
        button = gr.Button("Audit", variant="primary", elem_id="audit-button", scale=1)
    status = gr.Markdown(elem_id="audit-status")
    report_state = gr.State(None)
    with gr.Tabs():
        with gr.Tab("Duplicates"):
            pairs = thumbnail_gallery("Pairs (left ↔ right) with their similarity", "audit-pairs", columns=4,
                                      height=420)
        with gr.Tab("Outliers"):
            outliers = thumbnail_gallery("Most outlying first (mean distance to the nearest images)",
                                         "audit-outliers", columns=6, height=420)
        with gr.Tab("Downloads"):
            reports = gr.File(label="duplicates.csv · outliers.csv · unreadable.csv", file_count="multiple",
                              interactive=False, elem_id="audit-files")
            export_button = gr.Button("Export for the Embedding Projector", elem_id="audit-export")
            projector = gr.File(label="projector.zip: load vectors.tsv + metadata.tsv at projector.tensorflow.org, or "
                                      "unzip and run `tensorboard --logdir DIR`", interactive=False,
                                elem_id="audit-projector")
        with gr.Tab("Few labels"):
            gr.Markdown("Name every image from a few examples per class (1–10 each): a folder with one subfolder per "
                        "class, or example files named `CLASS_anything.png`. The images are your uploads, or else "
                        "the folder above.", elem_classes="ssl-hint")
            with gr.Row():
                examples_folder = gr.Textbox("", label="Examples folder", placeholder="/path/to/examples", scale=2)
                method = gr.Radio(list(labeling.METHODS), value="knn", label="Method", scale=1)
            with gr.Row():
                example_files = gr.File(label="…or example files CLASS_anything.png", file_count="multiple", height=120)
                image_files = gr.File(label="Images to label (empty: the folder above)", file_count="multiple", height=120)
            label_button = gr.Button("Label", variant="primary", elem_id="audit-label")
            labelled = thumbnail_gallery("Labels with confidence", "audit-labelled", columns=6, height=420)
            labels_file = gr.File(label="labels.csv (path, label, confidence)", interactive=False)

    @reports_errors(outputs=5, status_at=3)
    def do_audit(run_id, folder, threshold):
        """Audit a folder with a run: duplicate pairs, outliers, CSV reports."""
        report, out = run_audit(context.run_path(run_id), folder, threshold)
        files = [report.files[name] for name in ("duplicates", "outliers", "unreadable")]
        return (pair_gallery(report, threshold), outlier_gallery(report), files,
                message_html(summary_text(report, threshold), "ok"), {"report": report, "out": out})

    @reports_errors(outputs=3, status_at=2)
    def rethreshold(state, threshold):
        """Show and write the duplicate pairs at another threshold, without searching again."""
        if not state:
            return gr.skip(), gr.skip(), message_html("Press Audit first.", "info")
        report = state["report"]
        files = audit.write_report(report, state["out"], threshold=float(threshold))
        return (pair_gallery(report, threshold), [files[name] for name in ("duplicates", "outliers", "unreadable")],
                message_html(summary_text(report, threshold), "ok"))

    @reports_errors(outputs=2, status_at=1)
    def do_export(run_id, folder):
        """Embedding Projector files (vectors.tsv, metadata.tsv, sprite.png, configs) for the folder, zipped."""
        archive, summary = run_export(context.run_path(run_id), folder)
        note = (f"exported {summary['exported']} of {summary['images']} images (the projector's 8,192 px sprite holds "
                f"no more at {summary['thumbnail_size']} px)" if summary["sampled"] else f"exported {summary['images']} images")
        return archive, message_html(note + f", {summary['dim']} dimensions", "ok")

    @reports_errors(outputs=3, status_at=2)
    def do_label(run_id, folder, examples_folder, example_files, image_files, method):
        """A class and a confidence for every image, from a few labelled examples (kNN on the run's embeddings)."""
        result, csv_path = run_labels(context.run_path(run_id), folder, examples_folder, example_files, image_files, method)
        shown = [(framed(enlarge(result.images[i], SHOWN)), f"{result.labels[i]} · {result.confidences[i]:.0%} · {result.paths[i]}")
                 for i in range(min(SHOWN_LABELS, len(result.labels)))]
        counts = ", ".join(f"{name}: {count}" for name, count in result.counts().items())
        skipped = f"; skipped {len(result.skipped)} unreadable file(s)" if result.skipped else ""
        return shown, csv_path, message_html(f"labelled {len(result.labels)} images from {result.examples} examples "
                                             f"({counts}){skipped}", "ok")

    heavy = dict(concurrency_id="audit", concurrency_limit=1)
    button.click(do_audit, [run, folder, threshold], [pairs, outliers, reports, status, report_state],
                 api_name="audit", **heavy)
    threshold.release(rethreshold, [report_state, threshold], [pairs, reports, status], api_name="duplicates",
                      concurrency_id="audit-view", concurrency_limit=4)
    export_button.click(do_export, [run, folder], [projector, status], api_name="export", **heavy)
    label_button.click(do_label, [run, folder, examples_folder, example_files, image_files, method],
                       [labelled, labels_file, status], api_name="label", **heavy)
    refresh = lambda current: refreshed_runs(context, current, need="encoder")
    tab.select(refresh, run, run, api_name="refresh_audit_runs", api_visibility="private", queue=False)
    context.demo.load(refresh, run, run, api_name="load_audit_runs", api_visibility="private", queue=False)

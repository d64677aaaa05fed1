"""Audit: a finished run looks at an image folder: duplicate pairs, outliers, unreadable files, image-quality issues
(one gallery per check of ``sslcore.quality``), a projector export, and a few-label mode that names every image from a handful of examples per class.

The page lays out components and calls ``sslcore.audit``, ``sslcore.export`` and ``sslcore.labeling``; it never
writes into the audited folder (reports and exports go to a temporary folder offered for download).
"""
from __future__ import annotations

import os
import shutil

import gradio as gr
import numpy as np

from pages import few_labels
from pages.common import AppContext, folder_picker, message_html, refreshed_runs, reports_errors, run_dropdown
from pages.few_labels import resolve_folder
from pages.images import png_file
from pages.thumbnails import SHOWN, framed, gallery_css, thumbnail_gallery
from sslcore import audit, export, quality
from sslcore.data import DataError, decode_image
from sslcore.labs import Lab

TITLE = "Audit"
SHOWN_PAIRS = 48
SHOWN_OUTLIERS = 48
SHOWN_ISSUES = 24       # per quality check
REPORTS = ("duplicates", "outliers", "unreadable", "issues")
SLIDER_FLOOR = 0.8      # pairs down to this similarity are kept, so the slider re-filters without searching again
HEAD = gallery_css(("audit-pairs", "audit-outliers", "audit-labelled", *(f"audit-quality-{c}" for c in quality.CHECKS)))


# ---------------------------------------------------------------------------------------------- what the events do


def thumbnail(root: str, path: str) -> np.ndarray:
    try:
        return decode_image(os.path.join(root, path), SHOWN)
    except DataError:
        return np.full((SHOWN, SHOWN, 3), 200, np.uint8)


def pair_gallery(report: audit.AuditReport, threshold: float) -> list[tuple[str, str]]:
    """Each pair side by side with its similarity: exact copies first, then most similar first (PNG files)."""
    return [(png_file(framed(thumbnail(report.root, pair.a), thumbnail(report.root, pair.b))),
             f"{'exact copy' if pair.exact else f'{pair.similarity:.3f}'} · {pair.a} ↔ {pair.b}")
            for pair in report.pairs_above(threshold)[:SHOWN_PAIRS]]


def outlier_gallery(report: audit.AuditReport) -> list[tuple[str, str]]:
    return [(png_file(framed(thumbnail(report.root, path))), f"#{rank + 1} · {score:.3f} · {path}")
            for rank, (path, score) in enumerate(report.outliers[:SHOWN_OUTLIERS])]


def issue_galleries(report: audit.AuditReport) -> list[list[tuple[str, str]]]:
    """One gallery per quality check (``quality.CHECKS`` order): its flagged images, worst first, with their scores."""
    return [[(png_file(framed(thumbnail(report.root, path))), f"{score:.3f} · {path}")
             for path, issue, score in report.issues if issue == check][:SHOWN_ISSUES] for check in quality.CHECKS]


def issue_label(check: str) -> str:
    return f"{check.replace('_', ' ').capitalize()}: {quality.DESCRIPTIONS[check]} under {quality.THRESHOLDS[check]}"


def summary_text(report: audit.AuditReport, threshold: float, *, public: bool = False) -> str:
    """``public``: name the folder, not where the server keeps it (a Space's visitor sees their upload's name)."""
    pairs = report.pairs_above(threshold)
    exact = sum(pair.exact for pair in pairs)
    counts = report.summary["quality_issues"]
    issues = ", ".join(f"{count} {check.replace('_', ' ')}" for check, count in counts.items() if count) or "none"
    where = os.path.basename(report.root) if public else report.root
    return (f"{report.images} images in {where}: {exact} exact copies, {len(pairs) - exact} near-duplicate pairs "
            f"at similarity ≥ {threshold:.2f}, {len(report.unreadable)} unreadable file(s). "
            f"Most outlying: {', '.join(path for path, _ in report.outliers[:3])}. Quality issues: {issues}.")


def run_audit(lab: Lab, run_path, folder: str | None, threshold: float) -> tuple[audit.AuditReport, str]:
    """Audit into a fresh temporary folder (CSV downloads); keeps pairs down to SLIDER_FLOOR for the slider."""
    out = str(lab.output_folder("audit"))
    report = audit.audit_folder(run_path, resolve_folder(lab, run_path, folder), out, threshold=float(threshold),
                                candidate_floor=SLIDER_FLOOR)
    return report, out


def run_export(lab: Lab, run_path, folder: str | None) -> tuple[str, dict]:
    """Projector files for the folder, zipped for download."""
    out = str(lab.output_folder("projector"))
    summary = export.export_folder(run_path, resolve_folder(lab, run_path, folder), os.path.join(out, "projector"))
    archive = shutil.make_archive(os.path.join(out, "projector"), "zip", root_dir=os.path.join(out, "projector"))
    return archive, summary


# ---------------------------------------------------------------------------------------------- the page


def build(context: AppContext, tab: gr.Tab) -> None:
    gr.Markdown("Find exact copies, near-duplicates (crops, resizes, re-compressed JPEGs, mirror images, brightness "
                "changes) and outliers in an image folder, judged by a finished run's encoder, and images that are "
                "dark, light, blurry, nearly blank, of an odd size or shape, or grayscale among colour ones. The "
                "folder is only read: reports and exports are offered for download.")
    with gr.Row():
        run = run_dropdown("Finished run, or an encoder on the Hub (type hf://timm/resnet18.a1_in1k or USER/NAME)",
                           elem_id="audit-run", scale=2)
        with gr.Column(scale=3):
            folder = folder_picker(context, "Image folder", own_data="the run's own images", elem_id="audit-folder")
    with gr.Row():
        threshold = gr.Slider(SLIDER_FLOOR, 1.0, audit.DEFAULT_THRESHOLD, step=0.005, scale=3, elem_id="audit-threshold",
                              label="Near-duplicate threshold (whitened cosine, or crop-aligned pixel match)")
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
        with gr.Tab("Quality"):
            issues = [thumbnail_gallery(issue_label(check), f"audit-quality-{check}", columns=8, height=200)
                      for check in quality.CHECKS]
        with gr.Tab("Downloads"):
            reports = gr.File(label="duplicates.csv · outliers.csv · unreadable.csv · issues.csv", file_count="multiple",
                              interactive=False, elem_id="audit-files")
            export_button = gr.Button("Export for the Embedding Projector", elem_id="audit-export")
            projector = gr.File(label="projector.zip: load vectors.tsv + metadata.tsv at projector.tensorflow.org, or "
                                      "unzip and run `tensorboard --logdir DIR`", interactive=False,
                                elem_id="audit-projector")
        with gr.Tab("Few labels"):
            few_labels.build(context, run, status, folder=folder, where="the folder above", api_name="label",
                             elem_prefix="audit")

    @reports_errors(outputs=5 + len(quality.CHECKS), status_at=3)
    def do_audit(run_id, folder, threshold):
        """Audit a folder with a run: duplicate pairs, outliers, CSV reports, then one gallery per quality check."""
        report, out = run_audit(context.lab(), context.embedder(run_id), folder, threshold)
        files = [report.files[name] for name in REPORTS]
        return (pair_gallery(report, threshold), outlier_gallery(report), files,
                message_html(summary_text(report, threshold, public=context.public), "ok"), *issue_galleries(report),
                {"report": report, "out": out})

    @reports_errors(outputs=3, status_at=2)
    def rethreshold(state, threshold):
        """Show and write the duplicate pairs at another threshold, without searching again."""
        if not state:
            return gr.skip(), gr.skip(), message_html("Press Audit first.", "info")
        report = state["report"]
        files = audit.write_report(report, state["out"], threshold=float(threshold))
        return (pair_gallery(report, threshold), [files[name] for name in REPORTS],
                message_html(summary_text(report, threshold, public=context.public), "ok"))

    @reports_errors(outputs=2, status_at=1)
    def do_export(run_id, folder):
        """Embedding Projector files (vectors.tsv, metadata.tsv, sprite.png, configs) for the folder, zipped."""
        archive, summary = run_export(context.lab(), context.run_path(run_id), folder)
        note = (f"exported {summary['exported']} of {summary['images']} images (the projector's 8,192 px sprite holds "
                f"no more at {summary['thumbnail_size']} px)" if summary["sampled"] else f"exported {summary['images']} images")
        return archive, message_html(note + f", {summary['dim']} dimensions", "ok")

    heavy = dict(concurrency_id="audit", concurrency_limit=1)
    button.click(do_audit, [run, folder, threshold], [pairs, outliers, reports, status, *issues, report_state],
                 api_name="audit", **heavy)
    threshold.release(rethreshold, [report_state, threshold], [pairs, reports, status], api_name="duplicates",
                      concurrency_id="audit-view", concurrency_limit=4)
    export_button.click(do_export, [run, folder], [projector, status], api_name="export", **heavy)
    refresh = lambda current: refreshed_runs(context, current, need="encoder")
    tab.select(refresh, run, run, api_name="refresh_audit_runs", api_visibility="private", queue=False)
    context.demo.load(refresh, run, run, api_name="load_audit_runs", api_visibility="private", queue=False)

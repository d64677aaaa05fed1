"""Few labels: name images from a handful of labelled examples per class, by kNN (or a probe) on a run's embeddings.

One block, placed on the Audit page (its images: uploads, or else the audited folder) and on the Classify page
(uploads, or else the run's own folder); both call ``sslcore.labeling``.
"""
from __future__ import annotations

import os

import gradio as gr

from pages.common import AppContext, folder_picker, message_html, reports_errors, upload_name
from pages.images import png_file
from pages.thumbnails import SHOWN, framed, thumbnail_gallery
from sslcore import export, labeling
from sslcore.data import archives
from sslcore.labs import Lab
from sslcore.model_encoder import ModelEncoder
from sslcore.preview import enlarge

SHOWN_LABELS = 60


def resolve_folder(lab: Lab, run_path, folder: str | None) -> str:
    """The picked folder (an upload, or locally a path or an archive), or the run's own data when that is a folder."""
    if folder and folder.strip():
        return picked_folder(lab, folder)
    if isinstance(run_path, ModelEncoder):
        raise ValueError(f"Upload the images to look at ({run_path.source} brings no images of its own)")
    own = export.run_folder(run_path)
    if own is None:
        raise ValueError("Upload the images to look at (this run was not trained on a folder of images)")
    return own


def picked_folder(lab: Lab, folder: str) -> str:
    """A folder the visitor may read; an archive typed in locally is unpacked once, as ``folder:photos.zip`` is."""
    path = export.folder_path(lab.resolve_folder(folder.strip()))
    return archives.archive_folder(path) if os.path.isfile(path) and archives.is_archive(path) else path


def run_labels(lab: Lab, run_path, folder: str | None, examples_folder: str | None, example_files, image_files,
               method: str):
    """Examples from a folder (one subfolder per class) or from files named CLASS_x.png; images from uploads, or else
    ``folder`` (the run's own folder when empty). Returns the result and the CSV written."""
    if examples_folder and examples_folder.strip():
        examples = picked_folder(lab, examples_folder)
    elif example_files:
        examples = labeling.examples_by_file_name(list(example_files), [upload_name(f) for f in example_files])
    else:
        raise ValueError("Give examples: a folder with one subfolder per class, or upload files named CLASS_anything.png")
    images = [str(f) for f in image_files] if image_files else resolve_folder(lab, run_path, folder)
    result = labeling.label_images(run_path, images, examples=examples, method=method)
    out = str(lab.output_folder("labels") / "labels.csv")
    labeling.write_labels_csv(out, result)
    return result, out


def build(context: AppContext, run: gr.Dropdown, status: gr.Markdown, *, folder=None, where: str, api_name: str,
          elem_prefix: str) -> None:
    """The examples, images, method and Label button, wired to ``run_labels``; ``folder`` is the page's folder box
    (None: the run's own folder). ``where`` says in the hint what is labelled when nothing is uploaded."""
    gr.Markdown("Name every image from a few examples per class (1–10 each): a folder with one subfolder per "
                "class, or example files named `CLASS_anything.png`. The images are your uploads, or else "
                f"{where}.", elem_classes="ssl-hint")
    with gr.Row():
        with gr.Column(scale=2):
            examples_folder = folder_picker(context, "Examples (one subfolder per class)",
                                            elem_id=f"{elem_prefix}-examples")
        method = gr.Radio(list(labeling.METHODS), value="knn", label="Method", scale=1)
    with gr.Row():
        example_files = gr.File(label="…or example files CLASS_anything.png", file_count="multiple", height=120)
        image_files = gr.File(label=f"Images to label (empty: {where})", file_count="multiple", height=120)
    button = gr.Button("Label", variant="primary", elem_id=f"{elem_prefix}-label")
    labelled = thumbnail_gallery("Labels with confidence", f"{elem_prefix}-labelled", columns=6, height=420)
    labels_file = gr.File(label="labels.csv (path, label, confidence)", interactive=False)

    @reports_errors(outputs=3, status_at=2)
    def do_label(run_id, folder, examples_folder, example_files, image_files, method):
        """A class and a confidence for every image, from a few labelled examples (kNN on the run's embeddings)."""
        result, csv_path = run_labels(context.lab(), context.embedder(run_id), folder, examples_folder, example_files, image_files, method)
        shown = [(png_file(framed(enlarge(result.images[i], SHOWN))), f"{result.labels[i]} · {result.confidences[i]:.0%} · {result.paths[i]}")
                 for i in range(min(SHOWN_LABELS, len(result.labels)))]
        counts = ", ".join(f"{name}: {count}" for name, count in result.counts().items())
        skipped = f"; skipped {len(result.skipped)} unreadable file(s)" if result.skipped else ""
        return shown, csv_path, message_html(f"labelled {len(result.labels)} images from {result.examples} examples "
                                             f"({counts}){skipped}", "ok")

    folder = folder if folder is not None else gr.State("")
    button.click(do_label, [run, folder, examples_folder, example_files, image_files, method],
                 [labelled, labels_file, status], api_name=api_name, concurrency_id="audit", concurrency_limit=1)

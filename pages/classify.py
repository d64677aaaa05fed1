"""Classify: a finished run's classifier (encoder + linear probe) on images you upload, or your own classes from a
few examples each (the few-label mode: kNN on the run's embeddings)."""
from __future__ import annotations

import gradio as gr

from pages import few_labels
from pages.common import (AppContext, hub_token, message_html, refreshed_runs, reports_errors, run_dropdown, toast,
                          upload_name)
from pages.images import png_file
from pages.thumbnails import gallery_css
from sslcore import zerogpu
from sslcore.preview import enlarge

TITLE = "Classify"
SHOWN_SIZE = 128
HEAD = gallery_css(("classify-labelled",))


def build(context: AppContext, tab: gr.Tab) -> None:
    gr.Markdown("Any image Pillow reads (PNG, JPEG, WebP, GIF, TIFF, ...), any size, colour, grayscale or with "
                "transparency: each is centre-cropped to a square and resized to the run's image size.")
    with gr.Row():
        run = run_dropdown("Finished run with a classifier, or a model on the Hub (type USER/NAME)",
                           elem_id="classify-run", scale=3)
        token = gr.Textbox("", type="password", label="Hub token (private models only)", scale=1,
                           elem_id="classify-token")
        top_k = gr.Slider(1, 10, 3, step=1, label="Top classes", scale=1)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            # gr.File, not gr.Image: a file that is not an image then gets our message, naming the file.
            files = gr.File(label="Images", file_count="multiple", elem_id="classify-files")
            button = gr.Button("Classify", variant="primary", elem_id="classify-button")
            status = gr.Markdown(elem_id="classify-status")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Predictions", columns=4, height="auto", object_fit="contain", format="png",
                                 fit_columns=False,  # keep 4 columns even for 1–3 images (no full-width blow-up)
                                 elem_id="classify-gallery")
            ranking = gr.Dataframe(headers=["file", "top classes (probability)"], label="Top classes", interactive=False,
                                   elem_id="classify-table", column_widths=["30%", "70%"])
            with gr.Accordion("All results (JSON)", open=False):
                table = gr.JSON(label="Per file: top classes with probabilities, or the reason it was skipped")

    with gr.Accordion("Few-label mode: your own classes from a few examples each", open=False,
                      elem_id="classify-few-labels"):
        few_labels.build(context, run, status, where="the run's own folder", api_name="classify_few_labels",
                         elem_prefix="classify")

    @reports_errors(outputs=4)
    def classify(run_id, files, top_k, token=""):
        """Top classes with probabilities for each uploaded image; files that are not images are reported by name."""
        paths = list(files or [])
        results = zerogpu.classify_files(context.model_source(run_id), paths, int(top_k),
                                         names=[upload_name(path) for path in paths], token=hub_token(token))
        ranked = lambda r: ", ".join(f"{p['class']} ({p['probability']:.0%})" for p in r["predictions"])
        shown = [(png_file(enlarge(r["image"], SHOWN_SIZE)), f"{r['file']} → {r['predictions'][0]['class']}")
                 for r in results if r["predictions"]]
        # DataError messages read "<file>: <reason>"; the file already has its own column.
        rows = [[r["file"], ranked(r) if r["predictions"] else "not classified: " + r["error"].split(": ", 1)[-1]]
                for r in results]
        problems = [r["error"] for r in results if r["error"]]
        summary = f"classified {len(shown)} of {len(results)} file(s) with {run_id}"
        message = message_html(summary, "ok") if not problems else message_html(
            summary + ". Skipped: " + " | ".join(problems) + ". Upload image files (PNG, JPEG, ...) instead.", "error")
        if problems:
            toast(" | ".join(problems))
        return shown, rows, [{k: v for k, v in r.items() if k != "image"} for r in results], message

    button.click(classify, [run, files, top_k, token], [gallery, ranking, table, status], api_name="classify",
                 concurrency_id="classify", concurrency_limit=2)
    refresh = lambda current: refreshed_runs(context, current, need="classifier")
    tab.select(refresh, run, run, api_name="refresh_classify_runs", api_visibility="private", queue=False)
    context.demo.load(refresh, run, run, api_name="load_classify_runs", api_visibility="private", queue=False)

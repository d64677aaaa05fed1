"""Augment: see what random views look like before training on them."""
from __future__ import annotations

import threading

import gradio as gr

from pages import images as image_files
from pages.common import AppContext, data_source, data_source_picker, message_html, reports_errors, upload_name
from sslcore import preview
from sslcore.augment import DEFAULT_PRESET, PRESETS
from sslcore.explore import decode_upload

TITLE = "Augment"
PRESET_NAMES = tuple(PRESETS)   # weak, strong, simclr, contrastive
# The custom grid beside the training default (where its sliders start), then the other presets.
GRID_ROWS = (("custom", DEFAULT_PRESET), tuple(name for name in PRESET_NAMES if name != DEFAULT_PRESET))
CAPTIONS = {"custom": "custom: the sliders below", DEFAULT_PRESET: f"{DEFAULT_PRESET} preset (training's default)"}
CONTROLS_PER_ROW = 4
# Previews by their inputs (the resolved data source, never the name a visitor picked: upload:NAME is per visitor).
# Every new visitor's page asks for the same default preview on arrival; it is computed once per server.
PREVIEW_CACHE = image_files.ResultCache(64)
# The "preview" queue group lets PREVIEW_LIMIT events in at once so a cached preview never waits behind one being
# computed; at most COMPUTING of them compute at a time (2 CPU cores on a Space, shared with training).
PREVIEW_LIMIT, COMPUTING = 8, 2
_computing = threading.BoundedSemaphore(COMPUTING)


def _images(source: str, upload, count: int, image_size: int, seed: int):
    if upload:
        return decode_upload(upload, int(image_size), name=upload_name(upload))[None]
    return preview.sample_images(source, int(image_size), int(count), int(seed))


def _summary(pictures, image_size, seed) -> str:
    return message_html(f"{len(pictures)} image(s) at {int(image_size)} px, seed {int(seed)}", "ok")


def preview_grids(source: str, upload, images: int, draws: int, image_size: int, seed: int, settings: dict,
                  presets: bool = True) -> tuple[str, ...]:
    """PNG files of the custom grid (and of each preset's, with ``presets``) and the summary line.

    ``source`` is the resolved data source (``data_source``). An uploaded image is previewed afresh each time;
    anything else comes from PREVIEW_CACHE, so identical previews are computed once and served from one file.
    """
    images, draws, image_size, seed = int(images), int(draws), int(image_size), int(seed)
    config = preview.config_from_controls(settings)   # checks the settings before anything is cached

    def compute():
        with _computing:
            return draw()

    def draw():
        pictures = _images(source, upload, images, image_size, seed)
        grids = [preview.preview_augmentations(pictures, config, draws, seed)]
        if presets:
            grids += [preview.preview_augmentations(pictures, name, draws, seed) for name in PRESET_NAMES]
        return (*[image_files.png_file(grid) for grid in grids], _summary(pictures, image_size, seed))

    if upload:
        return compute()
    return PREVIEW_CACHE.get((source, images, draws, image_size, seed, repr(config), presets), compute)


def warm_default_preview() -> None:
    """Compute what every new visitor's page asks for on arrival (digits, seed 0), so the first one waits no more than
    the next; ``python app.py`` calls it in the background at start."""
    try:
        preview_grids("digits", None, 4, 4, 64, 0, preview.control_values(DEFAULT_PRESET))
    except Exception:  # noqa: BLE001 - a warm-up only; the first visitor computes it then
        pass


def build(context: AppContext, tab: gr.Tab) -> None:
    gr.Markdown("Each row: an original, then random views of it. Contrastive learning teaches the encoder that "
                "views of one image belong together, so these transforms are exactly the invariances it learns.")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            dataset, folder = data_source_picker(context, "augment")
            upload = gr.File(label="…or upload one image", file_count="single", height=120)
            count = gr.Slider(1, 8, 4, step=1, label="Images")
            draws = gr.Slider(1, 8, 4, step=1, label="Views per image")
            image_size = gr.Slider(16, 160, 64, step=8, label="Image size (px)",
                                   info="blur sigma and crop sizes are in pixels of this size")
            with gr.Row():
                seed = gr.Number(0, precision=0, label="Seed", min_width=80)
                redraw = gr.Button("Re-draw", variant="primary", elem_id="augment-redraw", min_width=80)
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="augment-status")
            images = {}
            for row in GRID_ROWS:
                with gr.Row():
                    for name in row:
                        with gr.Column(min_width=200):
                            # A caption above rather than Gradio's label badge, which would cover the originals.
                            gr.Markdown(f"**{CAPTIONS.get(name, name + ' preset')}**")
                            images[name] = gr.Image(show_label=False, format="png", elem_id=f"augment-{name}",
                                                    buttons=["download", "fullscreen"])
            custom, presets = images.pop("custom"), [images[name] for name in PRESET_NAMES]
    with gr.Accordion("Custom augmentation: every AugmentConfig setting", open=True):
        start_from = gr.Dropdown(list(PRESET_NAMES), value=DEFAULT_PRESET, label="Load a preset into the sliders")
        controls = {}
        specs = preview.augment_controls(DEFAULT_PRESET)
        for first in range(0, len(specs), CONTROLS_PER_ROW):
            with gr.Row():
                for control in specs[first: first + CONTROLS_PER_ROW]:
                    if control["kind"] == "bool":
                        controls[control["name"]] = gr.Checkbox(control["value"], label=control["label"])
                    else:
                        controls[control["name"]] = gr.Slider(control["minimum"], control["maximum"], control["value"],
                                                              step=control["step"], label=control["label"])

    common_inputs = {"dataset": dataset, "folder": folder, "upload": upload, "images": count, "draws": draws,
                     "image_size": image_size, "seed": seed}

    @reports_errors(outputs=1 + len(PRESET_NAMES) + 1)
    def preview_all(dataset, folder, upload, images, draws, image_size, seed, **settings):
        """Originals next to random views: with the slider settings, and with each preset."""
        return preview_grids(data_source(context, dataset, folder), upload, images, draws, image_size, seed, settings)

    @reports_errors(outputs=2)
    def preview_custom(dataset, folder, upload, images, draws, image_size, seed, **settings):
        """Only the slider-driven grid: what a moving slider needs."""
        return preview_grids(data_source(context, dataset, folder), upload, images, draws, image_size, seed, settings,
                             presets=False)

    all_outputs = [custom, *presets, status]
    event = dict(inputs_kwargs={**common_inputs, **controls}, concurrency_id="preview", concurrency_limit=PREVIEW_LIMIT,
                 trigger_mode="always_last", show_progress="minimal")
    gr.on([dataset.change, folder.submit, upload.change, count.release, draws.release, image_size.release, seed.submit,
           context.demo.load], preview_all, outputs=all_outputs, api_name="preview", **event)
    redraw.click(lambda value: int(value or 0) + 1, seed, seed, api_name="next_seed", api_visibility="private",
                 queue=False).then(
        preview_all, outputs=all_outputs, api_name="redraw", api_visibility="undocumented", **event)
    # .change fires while a slider is dragged, when its number box is edited and when a preset is loaded;
    # always_last keeps at most one preview waiting, so a fast drag never builds a backlog.
    gr.on([control.change for control in controls.values()], preview_custom, outputs=[custom, status],
          api_name="preview_custom", **event)
    start_from.input(lambda name: [gr.update(value=v) for v in preview.control_values(name).values()], start_from,
                     list(controls.values()), api_name="load_preset", api_visibility="undocumented", queue=False)

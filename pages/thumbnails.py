"""Galleries of square thumbnails with captions (the Audit page's pairs and outliers, labelled images)."""
from __future__ import annotations

import gradio as gr
import numpy as np

SHOWN = 96              # gallery pixels per image
PAIR_GAP = 12           # transparent pixels between the two images of a pair
MARGIN = 8              # transparent pixels at least around the pictures of a gallery item
CAPTION_BAND = 40       # transparent pixels below them, where the gallery draws the caption


def gallery_css(elem_ids) -> str:
    """Gradio 6.31's gallery draws its label over the first row (the grid's "pt-6" class has no CSS) and cuts a
    caption at 80% of the cell on one line: these galleries leave the label a strip of its own and let a caption
    (the file names) wrap in the band that framed() keeps free below the pictures."""
    return ("<style>\n"
            + ", ".join(f"#{name} .grid-container" for name in elem_ids) + " { padding-top: 30px; }\n"
            + ", ".join(f"#{name} .caption-label" for name in elem_ids)
            + " { max-width: calc(100% - 2 * var(--block-label-margin)); white-space: normal; overflow-wrap: anywhere; }\n"
            + "</style>")


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


def thumbnail_gallery(label: str, elem_id: str, columns: int, height: int) -> gr.Gallery:
    """A grid of square thumbnails with captions, whatever the number of items.

    fit_columns=False: Gradio otherwise widens the columns to the number of items, so a single item filled the
    whole width as one square cell, taller than the box and cut off at its bottom. preview=False and no
    selected_index: nothing opens enlarged until the user clicks it (allow_preview).
    """
    return gr.Gallery(label=label, columns=columns, height=height, fit_columns=False, preview=False,
                      allow_preview=True, selected_index=None, object_fit="contain", format="png", elem_id=elem_id)

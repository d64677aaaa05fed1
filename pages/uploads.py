"""The visitor's uploads as API endpoints, for scripts (gradio_client): the pages' upload buttons do the same."""
from __future__ import annotations

import gradio as gr

from pages.common import AppContext, api_errors


def register_api(context: AppContext) -> None:
    @api_errors
    def upload_data(files: list[gr.FileData]) -> dict:
        """File images, a folder's files or .zip / .tar / .tar.gz archives into your lab as one data set; returns its
        source string (``upload:NAME``: pass it as ``data`` to /start_training, or as the folder of /audit) and what was
        skipped."""
        paths = [item["path"] if isinstance(item, dict) else getattr(item, "path", item) for item in files or []]
        source, ingested = context.lab().ingest([str(path) for path in paths])
        return {"source": source, "images": ingested.images, "skipped": [list(pair) for pair in ingested.skipped]}

    @api_errors
    def list_uploads() -> list:
        """Your uploads, newest first, as source strings (``upload:NAME``)."""
        return context.lab().uploads()

    gr.api(upload_data, api_name="upload_data", concurrency_id="uploads", concurrency_limit=2)
    gr.api(list_uploads, api_name="list_uploads", concurrency_id="poll", concurrency_limit=None)

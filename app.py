"""sslcore lab: a Gradio app to preview augmentations, train self-supervised encoders and look inside them.

``python app.py`` serves http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change that). One tab per
module in ``pages/``; training runs as background processes (``sslcore.jobs``) writing to ``$SSLCORE_RUNS``
(default ``./runs``), so the app stays responsive and a restarted app finds every run where it was. On a ZeroGPU
Space, training and every other accelerator call go through ``@spaces.GPU`` functions (``sslcore.zerogpu``).
"""
from __future__ import annotations

import os
import threading

import gradio as gr

import sslcore
from pages import audit, augment, classify, common, explore, hub, train, uploads
from sslcore import zerogpu
from sslcore.credentials import on_public_server
from sslcore.data.archives import UploadLimits
from sslcore.jobs import JobManager

# Gradio's queue rebuilds a pandas table of its last GRADIO_ANALYTICS_MAX_EVENTS (10,000) events after every event,
# for a monitoring page this app does not enable: ~10 ms per call once a crowd has made 10,000 calls, as much as a
# status call itself costs. Summarise rarely and over fewer events (read when demo.queue() makes the queue).
QUEUE_ANALYTICS = {"GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000", "GRADIO_ANALYTICS_MAX_EVENTS": "1000"}
for _name, _value in QUEUE_ANALYTICS.items():
    os.environ.setdefault(_name, _value)

# System fonts only: the app must look right offline, and Gradio's default theme fetches Google Fonts.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])

PAGES = (augment, train, explore, classify, audit, hub)   # a new page is one module and one entry here

CSS = """
.ssl-msg { padding: 6px 10px; border-radius: 6px; margin: 2px 0; }
.ssl-ok { background: #ecfdf5; color: #065f46; }
.ssl-info { background: #eff6ff; color: #1e3a8a; }
.ssl-warn { background: #fffbeb; color: #92400e; }
.ssl-error { background: #fef2f2; color: #991b1b; font-weight: 600; }
.ssl-progress { height: 12px; background: #e5e7eb; border-radius: 6px; overflow: hidden; }
.ssl-bar { height: 100%; background: #2563eb; transition: width 0.6s ease; }
.ssl-bar-finished { background: #16a34a; } .ssl-bar-failed, .ssl-bar-interrupted { background: #dc2626; }
.ssl-bar-stopped { background: #9ca3af; }
.ssl-progress-text { font-size: 0.9em; color: #374151; margin-top: 4px; font-variant-numeric: tabular-nums; }
.ssl-hint { font-size: 0.9em; color: #4b5563; }
#ssl-header { font-size: 0.95em; color: #374151; }
#ssl-tsne-tip { position: fixed; display: none; z-index: 1000; pointer-events: none; background: white;
                border: 1px solid #d1d5db; border-radius: 6px; padding: 4px; box-shadow: 0 2px 8px rgba(0,0,0,.15);
                font-size: 12px; text-align: center; }
#ssl-tsne-tip img { width: 96px; height: 96px; image-rendering: pixelated; display: block; }
"""


def build_app(jobs: JobManager | None = None) -> gr.Blocks:
    # On ZeroGPU nothing may train in the background: the visitor's page drives each GPU call.
    jobs = jobs or (zerogpu.ChunkedJobManager() if zerogpu.on_zerogpu() else JobManager())
    # A public Space's strangers leave files in Gradio's cache with every upload and download: cleared after 2 hours.
    delete_cache = (1800, 7200) if on_public_server() else None
    with gr.Blocks(title="sslcore lab", delete_cache=delete_cache) as demo:
        context = common.AppContext(jobs=jobs, demo=demo)
        # A public Space does not say where its disk is; a local user wants to know where runs go.
        where = (" · your own lab: your runs and uploads are yours alone" if context.public
                 else f" · runs folder `{jobs.root}`")
        gr.Markdown(f"**sslcore lab** · Keras backend **{sslcore.BACKEND}** on **{common.device_description()}** — "
                    f"{sslcore.BACKEND_REASON}{where}", elem_id="ssl-header")
        demo.load(common.remember_visitor, context.visitor_key, context.visitor_key, api_name="remember_visitor",
                  api_visibility="private", queue=False)
        for page in PAGES:
            with gr.Tab(page.TITLE, id=page.TITLE.lower()) as tab:
                page.build(context, tab)
        uploads.register_api(context)
    # CPU-heavy events have their own capped groups (preview 8, of which 2 compute; explore 1, audit 1, classify 2,
    # finetune 1); Stop and a run's status an unlimited one (pages.train.CONTROL_EVENTS). This caps the rest.
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def launch_options() -> dict:
    """What launch() needs beyond the defaults (Gradio 6 takes theme, css and head here, not in Blocks)."""
    head = "".join(getattr(page, "HEAD", "") for page in PAGES)
    return dict(css=CSS, head=head, theme=THEME, footer_links=["api", "gradio"],
                max_file_size=UploadLimits.from_env().max_upload_bytes)


def main() -> None:
    # server_name / server_port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (default 127.0.0.1:7860).
    threading.Thread(target=augment.warm_default_preview, daemon=True).start()
    build_app().launch(**launch_options())


if __name__ == "__main__":
    main()

"""Hub: push a finished run to the Hugging Face Hub -- encoder, classifier, config, metrics and a model card.

The token field is a password box: its value is sent once to ``sslcore.hub.push`` and is never shown, logged, written
to the run folder or the card, nor echoed in an error. With the field empty the server's own credentials
(HF_TOKEN, then ``hf auth login``) are used -- except on a Hugging Face Space (SPACE_ID is set), where they are the
Space owner's, so every visitor must paste their own token.
"""
from __future__ import annotations

import html

import gradio as gr

from pages.common import AppContext, message_html, refreshed_runs, run_dropdown, toast
from sslcore import hub
from sslcore.credentials import server_credentials_allowed

TITLE = "Hub"
STEPS = 6   # progress fractions: token, measure, create, upload, card, done


def build(context: AppContext, tab: gr.Tab) -> None:
    fallback = ("Leave it empty to use this machine's HF_TOKEN or `hf auth login`." if server_credentials_allowed()
                else "Required here: this app runs on a shared Space and never uses the Space owner's credentials.")
    gr.Markdown("Share a finished run on the Hugging Face Hub: the encoder and its classifier (Keras 3 `.keras` files), "
                "the training config and metrics, and a model card with kNN and linear accuracy measured on the run's "
                "held-out images. The card is uploaded after the weights.")
    with gr.Row():
        run = run_dropdown("Finished run", elem_id="hub-run", scale=2)
        repo = gr.Textbox(label="Repository", placeholder="your-name/simclr-digits", elem_id="hub-repo", scale=2,
                          info="USER/NAME or ORG/NAME; just NAME pushes to your own namespace")
    with gr.Row():
        token = gr.Textbox(label="Hugging Face token (write access)", type="password", placeholder="hf_...",
                           elem_id="hub-token", scale=3, info=fallback)
        private = gr.Checkbox(False, label="Private repository", elem_id="hub-private", scale=1,
                              info="an existing repository keeps its visibility")
    button = gr.Button("Push to the Hub", variant="primary", elem_id="hub-push")
    link = gr.Markdown(elem_id="hub-link")
    status = gr.Markdown(elem_id="hub-status")

    def push(run_id, repo_id, token_value, make_private, progress=gr.Progress()):
        """Push a finished run (encoder, classifier, config, metrics, model card) to USER/NAME on the Hub."""
        secret = (token_value or "").strip() or None
        try:
            if secret is None and not server_credentials_allowed():
                raise hub.HubError("Paste your Hugging Face token (write access): on a shared Space the app never "
                                   f"uses the Space owner's credentials. Create one at {hub.TOKENS_PAGE}.", "no_token")
            done = [0]

            def report(message: str) -> None:
                done[0] += 1
                progress(min(done[0] / STEPS, 0.95), desc=message)

            result = hub.push(context.run_path(run_id, own=True), repo_id or "", token=secret, private=bool(make_private),
                              progress=report)
        except (hub.HubError, ValueError, FileNotFoundError) as error:
            message = hub.scrub(str(error), secret)
            toast(message)
            return gr.skip(), message_html(message, "error")
        except Exception as error:  # noqa: BLE001 - say what happened (without the token) and keep serving
            message = hub.scrub(f"Push failed ({type(error).__name__}: {error}). The app is still running; try again.",
                                secret)
            print(f"hub page: {message}", flush=True)
            toast(message)
            return gr.skip(), message_html(message, "error")
        return _result_markdown(result), message_html(
            f"pushed {len(result.files)} files to {result.repo_id}" + (" (private)" if result.private else ""), "ok")

    button.click(push, [run, repo, token, private], [link, status], api_name="push", concurrency_id="hub",
                 concurrency_limit=1)
    tab.select(lambda current: refreshed_runs(context, current, need="encoder"), run, run,
               api_visibility="private", queue=False)
    context.demo.load(lambda current: refreshed_runs(context, current, need="encoder"), run, run,
                      api_visibility="private", queue=False)


def _result_markdown(result: hub.PushResult) -> str:
    figures = []
    if result.evaluation and result.evaluation.get("knn_accuracy") is not None:
        figures.append(f"kNN {result.evaluation['knn_accuracy']:.1%}")
    if result.evaluation and result.evaluation.get("linear_accuracy") is not None:
        figures.append(f"linear {result.evaluation['linear_accuracy']:.1%}")
    lines = [f"**[{html.escape(result.repo_id)}]({result.url})**" + (f" · {' · '.join(figures)}" if figures else ""),
             "", "Files: " + ", ".join(f"`{name}`" for name in result.files)]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines)

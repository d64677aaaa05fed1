"""Explore: a finished run's embedding space (t-SNE), nearest neighbours, kNN accuracy and confusion matrix."""
from __future__ import annotations

import gradio as gr

from pages.common import (AppContext, data_source, data_source_picker, hub_token, message_html, refreshed_runs,
                          reports_errors, run_dropdown, upload_name)
from pages.images import gallery as png_gallery, png_file
from sslcore import explore, plots, zerogpu
from sslcore.preview import enlarge

TITLE = "Explore"
SHOWN_SIZE = 96   # gallery pixels per image; small run images are enlarged without blurring
OWN_DATA = "the run's own data (its test split and training images)"

# Plotly's hover box cannot show an image, so this shows the point's thumbnail (customdata[1]) beside the
# cursor, and a click on a point asks for its nearest neighbours (customdata[0] is its test index).
HEAD = """
<script>
(function () {
  function tip() {
    let box = document.getElementById("ssl-tsne-tip");
    if (!box) {
      box = document.createElement("div");
      box.id = "ssl-tsne-tip";
      box.innerHTML = "<img alt='hovered image'><div></div>";
      document.body.appendChild(box);
    }
    return box;
  }
  function pickNeighbours(index) {
    const input = document.querySelector("#neighbor-index input");
    if (!input) return;
    input.value = index;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.dispatchEvent(new Event("change", { bubbles: true }));
    setTimeout(function () { const b = document.querySelector("#neighbor-button"); if (b) b.click(); }, 150);
  }
  function hook() {
    document.querySelectorAll("#tsne-plot .js-plotly-plot").forEach(function (plot) {
      if (!plot.on || plot.__sslData === plot.data) return;
      plot.__sslData = plot.data;
      if (plot.removeAllListeners) { plot.removeAllListeners("plotly_hover"); plot.removeAllListeners("plotly_unhover"); plot.removeAllListeners("plotly_click"); }
      plot.on("plotly_hover", function (event) {
        const point = event.points && event.points[0];
        if (!point || !point.customdata || !point.customdata[1]) return;
        const box = tip();
        box.querySelector("img").src = point.customdata[1];
        box.querySelector("div").textContent = "#" + point.customdata[0] + " · class " + point.data.name;
        const e = event.event || {};
        box.style.left = ((e.clientX || 0) + 16) + "px";
        box.style.top = ((e.clientY || 0) + 16) + "px";
        box.style.display = "block";
      });
      plot.on("plotly_unhover", function () { tip().style.display = "none"; });
      plot.on("plotly_click", function (event) {
        const point = event.points && event.points[0];
        if (point && point.customdata) pickNeighbours(point.customdata[0]);
      });
    });
  }
  setInterval(hook, 800);
})();
</script>
"""


def _caption(row: dict) -> str:
    return f"{row['class_name']} · {row['similarity']:.2f}"


def build(context: AppContext, tab: gr.Tab) -> None:
    with gr.Row():
        run = run_dropdown("Finished or stopped run, or a model on the Hub (type USER/NAME: a pushed run, or a "
                           "pretrained encoder such as timm/resnet18.a1_in1k)", elem_id="explore-run", scale=3)
        show = gr.Button("Show embeddings", variant="primary", elem_id="explore-show", scale=1)
    with gr.Accordion("Data to embed: the run's own, or any other (a pretrained encoder needs one)", open=False,
                      elem_id="explore-data-box"):
        data, data_text = data_source_picker(context, "explore", own=OWN_DATA, label="Data to embed")
    status = gr.Markdown(elem_id="explore-status")
    with gr.Row():
        with gr.Column(scale=3):
            tsne_plot = gr.Plot(plots.empty_figure("Pick a finished run and press 'Show embeddings'"),
                                show_label=False, elem_id="tsne-plot")
        with gr.Column(scale=2):
            knn_box = gr.Markdown(elem_id="explore-knn")
            confusion_plot = gr.Plot(show_label=False, elem_id="confusion-plot")
    gr.Markdown("### Nearest neighbours in the training images\nClick a point of the t-SNE, type a test image "
                "index, or upload an image. Each neighbour shows its class · cosine similarity.")
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            index = gr.Number(0, precision=0, label="Test image index", elem_id="neighbor-index")
            k = gr.Slider(1, 32, 8, step=1, label="Neighbours (k)")
            find = gr.Button("Find neighbours", variant="primary", elem_id="neighbor-button")
            upload = gr.File(label="…or upload an image", file_count="single", height=110)
        with gr.Column(scale=1, min_width=160):
            query = gr.Image(label="Query", format="png", height=200, elem_id="neighbor-query")
        with gr.Column(scale=4):
            gallery = gr.Gallery(show_label=False, columns=6, height="auto", fit_columns=False,
                                 object_fit="contain", elem_id="neighbor-gallery", format="png")

    def embedded(run_id, data_choice, data_text):
        """The run's (or Hub model's) embeddings of its own data or of the data picked under 'Data to embed'."""
        other = data_source(context, data_choice, data_text, own=True)
        return zerogpu.load_run(context.model_source(run_id), hub_token(), other)

    @reports_errors(outputs=2)
    def embeddings(run_id, data_choice=None, data_text=None):
        """t-SNE of a finished run's test-set embeddings, coloured by class."""
        data = embedded(run_id, data_choice, data_text)
        view = explore.tsne_view(data)
        figure = plots.tsne_figure(view["points"], view["labels"], data.class_names, indices=view["indices"],
                                   thumbnails=view["thumbnails"], title=f"t-SNE · {run_id}")
        stopped = f" ({data.stopped}: its last checkpoint's encoder)" if data.stopped else ""
        shown = context.lab().source_name(data.config["data"])
        return figure, message_html(f"{len(view['points'])} test images of {shown} embedded by {run_id}"
                                    f"{stopped}: hover a point to see its image, click it for its nearest neighbours", "ok")

    @reports_errors(outputs=3)
    def evaluation(run_id, data_choice=None, data_text=None):
        """kNN accuracy of the test split and its confusion matrix."""
        report = explore.knn_report(embedded(run_id, data_choice, data_text))
        text = (f"**kNN accuracy: {report['accuracy']:.1%}** on {report['images']} test images "
                f"(k = {report['k']}, cosine similarity, weighted vote)")
        return text, plots.confusion_figure(report["matrix"], report["class_names"]), gr.skip()

    @reports_errors(outputs=3)
    def nearest(run_id, index, upload, k, data_choice=None, data_text=None):
        """The k training images nearest to a test image (by index) or to an uploaded image."""
        data = embedded(run_id, data_choice, data_text)
        image = explore.decode_upload(upload, int(data.config["image_size"]), upload_name(upload)) if upload else None
        found = explore.neighbors(data, index=None if upload else index, image=image, k=int(k))
        gallery_items = [(enlarge(row["image"], SHOWN_SIZE), _caption(row)) for row in found["neighbors"]]
        return (png_file(enlarge(found["query"]["image"], SHOWN_SIZE)), png_gallery(gallery_items),
                message_html(f"{found['query']['source']} (class {found['query']['class_name']}): "
                             f"{len(gallery_items)} nearest training images", "ok"))

    heavy = dict(concurrency_id="explore", concurrency_limit=1)
    chosen = [run, data, data_text]
    gr.on([show.click, run.input], embeddings, chosen, [tsne_plot, status], api_name="embeddings", **heavy).then(
        evaluation, chosen, [knn_box, confusion_plot, status], api_name="evaluation", **heavy)
    gr.on([find.click, index.submit], nearest, [run, index, upload, k, data, data_text], [query, gallery, status],
          api_name="neighbors", **heavy)
    refresh = lambda current: refreshed_runs(context, current, need="encoder")
    tab.select(refresh, run, run, api_name="refresh_explore_runs", api_visibility="private", queue=False)
    context.demo.load(refresh, run, run, api_name="load_explore_runs", api_visibility="private", queue=False)

"""Plotly figures drawn from run rows, so the app, the CLI and a model card all show the same charts.

Inputs are plain rows (``steps.jsonl`` / ``metrics.jsonl`` dicts, arrays from ``sslcore.explore``); nothing
here trains, loads or computes features.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

RUN_COLOURS = ("#2563eb", "#ea580c", "#16a34a", "#9333ea")
CLASS_COLOURS = qualitative.Plotly + qualitative.D3 + qualitative.Set3

# (title, per-step key, per-epoch key): what each training panel draws. The probe panel pairs the online
# probe's accuracy on the training batches with its held-out accuracy, measured once per epoch.
TRAINING_PANELS = (
    ("Contrastive loss", "loss", "loss"),
    ("Contrastive accuracy", "contrastive_accuracy", "contrastive_accuracy"),
    ("Probe accuracy (train batches / held-out)", "train_probe_accuracy", "probe_accuracy"),
    ("kNN accuracy (held-out)", None, "knn_accuracy"),
)


def _layout(figure: go.Figure, height: int, title: str | None = None) -> go.Figure:
    figure.update_layout(height=height, margin=dict(l=50, r=20, t=60 if title else 40, b=40), template="plotly_white",
                         title=dict(text=title, x=0.01) if title else None,
                         legend=dict(orientation="h", yanchor="bottom", y=1.04, x=0, font=dict(size=11)))
    return figure


def empty_figure(message: str, height: int = 320) -> go.Figure:
    """A blank chart that says why it is blank (no run picked, nothing logged yet)."""
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, font=dict(size=15, color="#6b7280"), x=0.5, y=0.5,
                          xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return _layout(figure, height)


def _series(rows: Sequence[dict], key: str | None) -> tuple[list, list]:
    if key is None:
        return [], []
    points = [(row["step"], row[key]) for row in rows if row.get(key) is not None and "step" in row]
    return [p[0] for p in points], [p[1] for p in points]


def training_figure(runs: Sequence[tuple[str, Sequence[dict], Sequence[dict]]], height: int = 560) -> go.Figure:
    """Four panels (loss, contrastive accuracy, probe accuracy, kNN accuracy) against the training step.

    ``runs`` holds (label, step rows, epoch rows) per run; a second run is overlaid in its own colour with
    dashed lines. Thin lines are per step; markers are the per-epoch means and held-out evaluations.
    """
    if not runs or not any(steps or epochs for _, steps, epochs in runs):
        return empty_figure("No training steps logged yet" if runs else "No run selected: start one or pick a past run")
    figure = make_subplots(rows=2, cols=2, subplot_titles=[panel[0] for panel in TRAINING_PANELS],
                           horizontal_spacing=0.08, vertical_spacing=0.16)
    for index, (label, steps, epochs) in enumerate(runs):
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        dash = "solid" if index == 0 else "dash"
        for panel, (_, step_key, epoch_key) in enumerate(TRAINING_PANELS):
            row, col = panel // 2 + 1, panel % 2 + 1
            x, y = _series(steps, step_key)
            if x:
                figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{label} · per step", legendgroup=f"{label}-step",
                                            showlegend=panel == 0, line=dict(color=colour, width=1, dash=dash), opacity=0.45,
                                            hovertemplate="step %{x}: %{y:.4f}<extra>" + label + "</extra>"), row=row, col=col)
            x, y = _series(epochs, epoch_key)
            if x:
                figure.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"{label} · per epoch",
                                            legendgroup=f"{label}-epoch", showlegend=panel == 0 or (panel == 3 and not steps),
                                            line=dict(color=colour, width=2.5, dash=dash), marker=dict(size=7),
                                            hovertemplate="epoch end, step %{x}: %{y:.4f}<extra>" + label + "</extra>"),
                                 row=row, col=col)
    for panel in range(1, 4):
        figure.update_yaxes(range=[0, 1.02], row=panel // 2 + 1, col=panel % 2 + 1)
    figure.update_xaxes(title_text="step", row=2)
    return _layout(figure, height)


def tsne_figure(points: np.ndarray, labels: np.ndarray | None, class_names: Sequence[str], *,
                indices: np.ndarray | None = None, thumbnails: Sequence[str] | None = None,
                title: str = "t-SNE of encoder features", height: int = 520) -> go.Figure:
    """Scatter of 2-D embeddings, one colour per class.

    Each point carries (dataset index, thumbnail data URI) in ``customdata``: the app's page script shows the
    thumbnail on hover and fills in the index on click; plotly's own hover box shows index and class.
    """
    points = np.asarray(points)
    indices = np.arange(len(points)) if indices is None else np.asarray(indices)
    thumbnails = list(thumbnails) if thumbnails is not None else [""] * len(points)
    groups = [(None, np.arange(len(points)))] if labels is None else [
        (label, np.flatnonzero(np.asarray(labels) == label)) for label in np.unique(labels)]
    figure = go.Figure()
    for label, members in groups:
        name = "images" if label is None else (class_names[label] if label < len(class_names) else str(label))
        customdata = [[int(indices[i]), thumbnails[i]] for i in members]
        figure.add_trace(go.Scattergl(
            x=points[members, 0], y=points[members, 1], mode="markers", name=name, customdata=customdata,
            marker=dict(size=7, color=CLASS_COLOURS[(0 if label is None else int(label)) % len(CLASS_COLOURS)],
                        line=dict(width=0.5, color="white")),
            hovertemplate="image #%{customdata[0]}<br>class " + name + "<extra></extra>"))
    figure.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title=None)
    figure.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, title=None)
    figure = _layout(figure, height, title)
    figure.update_layout(legend=dict(orientation="v", y=1, x=1.02, yanchor="top"), hovermode="closest")
    return figure


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str = "Confusion matrix",
                     height: int = 480) -> go.Figure:
    """Rows are true classes, columns predictions; the colour is the share of each true class."""
    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    names = [str(name) for name in class_names]
    figure = go.Figure(go.Heatmap(
        z=shares, x=names, y=names, text=matrix, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
        colorbar=dict(title="share"), hovertemplate="true %{y}, predicted %{x}: %{text} images<extra></extra>"))
    figure.update_xaxes(title="predicted", type="category", side="bottom")
    figure.update_yaxes(title="true", type="category", autorange="reversed")
    return _layout(figure, height, title)


def finetune_figure(result: dict, height: int = 440) -> go.Figure:
    """Validation accuracy per epoch of the supervised baseline and the fine-tuned pretrained encoder."""
    curves = result.get("histories", {})
    if not curves:
        return empty_figure("No baseline / fine-tune comparison yet")
    figure = go.Figure()
    names = {"baseline": "supervised baseline (from scratch)", "finetuned": "fine-tuned pretrained encoder"}
    for index, (key, history) in enumerate(curves.items()):
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        epochs = list(range(1, len(history.get("val_accuracy", [])) + 1))
        figure.add_trace(go.Scatter(x=epochs, y=history.get("val_accuracy", []), mode="lines+markers",
                                    name=f"{names.get(key, key)} · validation", line=dict(color=colour, width=2.5)))
        if history.get("accuracy"):
            figure.add_trace(go.Scatter(x=epochs, y=history["accuracy"], mode="lines", name=f"{names.get(key, key)} · train",
                                        line=dict(color=colour, width=1, dash="dot")))
    figure.update_xaxes(title="epoch", dtick=1 if len(epochs) <= 20 else None)
    figure.update_yaxes(title="accuracy", range=[0, 1.02])
    figure = _layout(figure, height, result.get("title", "Baseline vs fine-tuned: validation accuracy"))
    # Four legend entries: below the chart, where they cannot collide with the title.
    figure.update_layout(legend=dict(orientation="h", y=-0.22, yanchor="top", x=0), margin=dict(b=110))
    return figure

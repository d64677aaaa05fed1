"""sslcore.plots: figures built from plain run rows (no Keras, no files)."""
import numpy as np

from sslcore import plots


def step_rows(count, offset=0.0):
    return [{"step": s, "epoch": 1 + (s - 1) // 5, "loss": 5.0 - 0.1 * s + offset, "contrastive_accuracy": 0.05 * s,
             "train_probe_accuracy": 0.04 * s} for s in range(1, count + 1)]


def epoch_rows(epochs):
    return [{"epoch": e, "step": 5 * e, "loss": 5.0 - e, "contrastive_accuracy": 0.2 * e, "probe_accuracy": 0.3 * e,
             "knn_accuracy": 0.4 * e} for e in range(1, epochs + 1)]


def test_training_figure_draws_each_metric_per_step_and_per_epoch():
    figure = plots.training_figure([("run-a", step_rows(10), epoch_rows(2))])
    names = [panel[0] for panel in plots.TRAINING_PANELS]
    assert [annotation.text for annotation in figure.layout.annotations] == names
    # loss, contrastive and probe accuracy per step + per epoch; kNN per epoch only
    assert len(figure.data) == 7
    knn = [trace for trace in figure.data if trace.xaxis == "x4"]
    assert len(knn) == 1 and list(knn[0].y) == [0.4, 0.8] and list(knn[0].x) == [5, 10]
    assert list(figure.data[0].x) == list(range(1, 11))


def test_an_overlaid_run_is_dashed_in_its_own_colour():
    figure = plots.training_figure([("a", step_rows(10), epoch_rows(2)), ("b", step_rows(6, 0.5), epoch_rows(1))])
    second = [trace for trace in figure.data if trace.legendgroup.startswith("b-")]
    assert second and all(trace.line.dash == "dash" for trace in second)
    assert {trace.line.color for trace in second} == {plots.RUN_COLOURS[1]}


def test_a_run_with_no_rows_yet_says_so():
    figure = plots.training_figure([("a", [], [])])
    assert "No training steps logged yet" in figure.layout.annotations[0].text
    assert "No run selected" in plots.training_figure([]).layout.annotations[0].text


def test_tsne_figure_has_one_trace_per_class_with_index_and_thumbnail():
    points = np.random.default_rng(0).normal(size=(6, 2))
    labels = np.array([0, 1, 1, 2, 0, 2])
    figure = plots.tsne_figure(points, labels, ["zero", "one", "two"], indices=np.array([10, 11, 12, 13, 14, 15]),
                               thumbnails=[f"data:image/png;base64,{i}" for i in range(6)])
    assert [trace.name for trace in figure.data] == ["zero", "one", "two"]
    assert [list(item) for item in figure.data[1].customdata] == [[11, "data:image/png;base64,1"],
                                                                  [12, "data:image/png;base64,2"]]


def test_tsne_figure_of_unlabelled_images_is_one_trace():
    figure = plots.tsne_figure(np.zeros((3, 2)), None, [])
    assert len(figure.data) == 1 and figure.data[0].name == "images"


def test_confusion_figure_colours_by_share_of_each_true_class():
    matrix = np.array([[8, 2], [0, 5]])
    figure = plots.confusion_figure(matrix, ["cat", "dog"])
    heatmap = figure.data[0]
    np.testing.assert_allclose(np.array(heatmap.z), [[0.8, 0.2], [0.0, 1.0]])
    assert np.array(heatmap.text).tolist() == matrix.tolist()
    assert list(heatmap.x) == ["cat", "dog"]


def test_finetune_figure_draws_both_validation_curves():
    result = {"histories": {"baseline": {"val_accuracy": [0.5, 0.7], "accuracy": [0.4, 0.6]},
                            "finetuned": {"val_accuracy": [0.8, 0.9], "accuracy": [0.7, 0.8]}}}
    figure = plots.finetune_figure(result)
    validation = [trace for trace in figure.data if "validation" in trace.name]
    assert len(validation) == 2 and list(validation[1].y) == [0.8, 0.9]
    assert "No baseline" in plots.finetune_figure({}).layout.annotations[0].text

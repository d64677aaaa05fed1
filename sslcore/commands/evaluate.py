"""``eval``: kNN and linear accuracy of a run's encoder, on labelled folders or on the run's held-out split."""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True)
    parser.add_argument("--train", help="labelled images for the kNN bank / logistic regression (default: the run's data)")
    parser.add_argument("--test", help="labelled images to evaluate on (default: the run's held-out split)")
    parser.add_argument("--knn-k", type=int, help="neighbours voting in kNN (default: the run's knn_k, 200)")


def run(args) -> dict:
    from sslcore.data import load
    from sslcore.run import Run

    finished = Run(args.run)
    size = finished.image_size
    if args.train or args.test:
        if not (args.train and args.test):
            raise ValueError("give both --train and --test (labelled image folders), or neither to use the run's data")
        train, test = load(args.train, size, test_fraction=0.5), load(args.test, size, test_fraction=0.5)
        if train.class_names != test.class_names:
            raise ValueError(f"--train classes {train.class_names} differ from --test classes {test.class_names}")
        figures = finished.evaluate_on(*_all_labelled(train, args.train), *_all_labelled(test, args.test), k=args.knn_k)
    else:
        figures = finished.evaluate(k=args.knn_k)   # exactly the trainer's data and split
    return {name: figures[name] for name in ("knn_accuracy", "linear_accuracy", "train_images", "test_images")} | {
        "run": str(finished.path)}


def _all_labelled(dataset, source):
    """Every labelled image of a source used whole (eval folders are not split again)."""
    import numpy as np

    if dataset.train_labels is None:
        raise ValueError(f"{source} has no class subfolders: eval needs labelled images")
    images = [dataset.train_images] + ([dataset.test_images] if dataset.test_images is not None else [])
    labels = [dataset.train_labels] + ([dataset.test_labels] if dataset.test_labels is not None else [])
    return np.concatenate(images), np.concatenate(labels)

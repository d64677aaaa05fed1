"""``eval``: kNN and linear accuracy of a run's encoder, on labelled folders or on the run's held-out split."""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True)
    parser.add_argument("--train", help="labelled images for the kNN bank / logistic regression (default: the run's data)")
    parser.add_argument("--test", help="labelled images to evaluate on (default: the run's held-out split)")
    parser.add_argument("--knn-k", type=int, default=200)


def run(args) -> dict:
    import keras
    import numpy as np

    from sslcore import evaluate
    from sslcore.data import load
    from sslcore.runs import RunDir

    run_dir = RunDir(args.run)
    config = run_dir.config()
    if not run_dir.encoder_path.exists():
        raise FileNotFoundError(f"{args.run} has no encoder.keras: the run has not finished (resume it first)")
    encoder = keras.saving.load_model(run_dir.encoder_path)
    size = config["image_size"]
    if args.train or args.test:
        if not (args.train and args.test):
            raise ValueError("give both --train and --test (labelled image folders), or neither to use the run's data")
        train, test = load(args.train, size, test_fraction=0.5), load(args.test, size, test_fraction=0.5)
        train_x, train_y = _all_labelled(train, args.train)
        test_x, test_y = _all_labelled(test, args.test)
        if train.class_names != test.class_names:
            raise ValueError(f"--train classes {train.class_names} differ from --test classes {test.class_names}")
    else:
        data = load(config["data"], size, test_fraction=config["test_fraction"], seed=config["seed"])
        if data.test_images is None:
            raise ValueError(f"{config['data']} has no labels: give labelled --train and --test folders")
        train_x, train_y, test_x, test_y = data.labelled_images, data.labelled_labels, data.test_images, data.test_labels
    embed = lambda x: np.asarray(encoder.predict(x.astype("float32"), batch_size=512, verbose=0), dtype="float32")
    train_f, test_f = embed(train_x), embed(test_x)
    return {"knn_accuracy": evaluate.knn_accuracy(train_f, train_y, test_f, test_y, k=args.knn_k),
            "linear_accuracy": evaluate.linear_accuracy(train_f, train_y, test_f, test_y),
            "train_images": int(len(train_x)), "test_images": int(len(test_x)), "run": str(run_dir.path)}


def _all_labelled(dataset, source):
    """Every labelled image of a source used whole (eval folders are not split again)."""
    import numpy as np

    if dataset.train_labels is None:
        raise ValueError(f"{source} has no class subfolders: eval needs labelled images")
    images = [dataset.train_images] + ([dataset.test_images] if dataset.test_images is not None else [])
    labels = [dataset.train_labels] + ([dataset.test_labels] if dataset.test_labels is not None else [])
    return np.concatenate(images), np.concatenate(labels)

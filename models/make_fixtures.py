"""Train small scikit-learn models on generated data, export them to ONNX with skl2onnx,
and record onnxruntime's answers for a few inputs, for the service's tests.

    target/venv/bin/python models/make_fixtures.py             # the committed fixtures
    target/venv/bin/python models/make_fixtures.py --survey D  # many estimators, into D

(`cargo xtask fixtures` sets up the venv and runs the first form.) The data is generated
with fixed seeds, so the models and the expected values are the same on every run with the
same library versions (models/requirements.txt).
"""

import argparse
import json
import pathlib

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.datasets import make_classification, make_regression

HERE = pathlib.Path(__file__).parent
WIDTH = 4


def regression_data():
    x, y = make_regression(n_samples=200, n_features=WIDTH, noise=0.5, random_state=1)
    return x.astype(np.float32), y


def classification_data(classes):
    x, y = make_classification(
        n_samples=300, n_features=WIDTH, n_informative=3, n_redundant=0, n_classes=classes,
        n_clusters_per_class=1, random_state=2,
    )
    return x.astype(np.float32), y


def export(model, x, path):
    """Write `model` as ONNX (float inputs, classifiers without ZipMap) and return
    onnxruntime's outputs for the first rows of `x`, which become the test inputs."""
    # ZipMap (a list of dicts per row) is not implemented by tract; plain tensors are.
    zipmap = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}} if zipmap else None,
                  target_opset={"": 17, "ai.onnx.ml": 3})
    path.write_bytes(onx.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = x[:8]
    names = [output.name for output in session.get_outputs()]
    values = session.run(None, {session.get_inputs()[0].name: inputs})
    return {
        "inputs": inputs.tolist(),
        "outputs": {name: value.tolist() for name, value in zip(names, values)},
    }


def fixtures():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression

    expected = {}
    x, y = regression_data()
    expected["linear_regression"] = export(LinearRegression().fit(x, y), x, HERE / "linear_regression.onnx")
    x, y = classification_data(3)
    expected["logistic_regression"] = export(
        LogisticRegression(max_iter=500).fit(x, y), x, HERE / "logistic_regression.onnx")
    x, y = classification_data(2)
    expected["random_forest"] = export(
        RandomForestClassifier(n_estimators=5, max_depth=3, random_state=3).fit(x, y), x,
        HERE / "random_forest.onnx")
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def survey(directory):
    """Export the estimators users reach for first; the service's survey test then says
    which of them tract loads and answers like onnxruntime."""
    from sklearn import ensemble, linear_model, neighbors, svm, tree
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    directory.mkdir(parents=True, exist_ok=True)
    regressors = {
        "LinearRegression": linear_model.LinearRegression(),
        "Ridge": linear_model.Ridge(),
        "SVR (linear)": svm.LinearSVR(max_iter=5000),
        "SVR (rbf)": svm.SVR(),
        "DecisionTreeRegressor": tree.DecisionTreeRegressor(max_depth=4),
        "RandomForestRegressor": ensemble.RandomForestRegressor(n_estimators=5, max_depth=4),
        "GradientBoostingRegressor": ensemble.GradientBoostingRegressor(n_estimators=10),
        "StandardScaler + LinearRegression": make_pipeline(StandardScaler(), linear_model.LinearRegression()),
        "KNeighborsRegressor": neighbors.KNeighborsRegressor(),
    }
    classifiers = {
        "LogisticRegression (binary)": (2, linear_model.LogisticRegression()),
        "LogisticRegression (3 classes)": (3, linear_model.LogisticRegression(max_iter=500)),
        "LinearSVC": (3, svm.LinearSVC()),
        "SVC (rbf, probabilities)": (3, svm.SVC(probability=True)),
        "DecisionTreeClassifier": (3, tree.DecisionTreeClassifier(max_depth=4)),
        "RandomForestClassifier (binary)": (2, ensemble.RandomForestClassifier(n_estimators=5, max_depth=4)),
        "RandomForestClassifier (3 classes)": (3, ensemble.RandomForestClassifier(n_estimators=5, max_depth=4)),
        "GradientBoostingClassifier (binary)": (2, ensemble.GradientBoostingClassifier(n_estimators=10)),
        "GradientBoostingClassifier (3 classes)": (3, ensemble.GradientBoostingClassifier(n_estimators=10)),
        "StandardScaler + LogisticRegression": (3, make_pipeline(StandardScaler(), linear_model.LogisticRegression())),
        "KNeighborsClassifier": (3, neighbors.KNeighborsClassifier()),
    }
    index = {}
    x, y = regression_data()
    for name, model in regressors.items():
        file = name.lower().replace(" ", "_").replace("(", "").replace(")", "").replace("+", "and") + ".onnx"
        index[name] = {"file": file, **export(model.fit(x, y), x, directory / file)}
    for name, (classes, model) in classifiers.items():
        x, y = classification_data(classes)
        file = name.lower().replace(" ", "_").replace("(", "").replace(")", "").replace("+", "and").replace(",", "") + ".onnx"
        try:
            index[name] = {"file": file, **export(model.fit(x, y), x, directory / file)}
        except Exception as error:  # an export failure is a row of the table too
            index[name] = {"file": None, "error": f"skl2onnx: {error}"}
    (directory / "index.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survey", type=pathlib.Path, help="export many estimators into this directory")
    arguments = parser.parse_args()
    if arguments.survey:
        survey(arguments.survey)
    else:
        fixtures()

"""Train scikit-learn, XGBoost and LightGBM models on generated data, export them to ONNX
(skl2onnx, onnxmltools), and record onnxruntime's answers for the service's tests.

    target/venv/bin/python models/make_fixtures.py                 # models/*.onnx and models/zoo/
    target/venv/bin/python models/make_fixtures.py --large DIR     # the benchmark's large models

(`cargo xtask fixtures` sets up the venv and runs the first form.) The data is generated
with fixed seeds and every trainer runs single-threaded, so the models and the expected
values are the same on every run with the same library versions (models/requirements.txt).

The zoo covers every estimator family users ship: linear models, SVMs, trees, forests,
boosting (scikit-learn, XGBoost, LightGBM), nearest neighbours, neural networks and
preprocessing pipelines, binary and multiclass, exported with the exporters' default
options (so classifiers end in ZipMap) unless the entry says otherwise. Tree models are
also asked about rows whose features sit exactly on split thresholds.
"""

import argparse
import json
import os
import pathlib
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx.common.shape_calculator import (
    calculate_linear_classifier_output_shapes,
    calculate_linear_regressor_output_shapes,
)
from sklearn.datasets import make_classification, make_regression

HERE = pathlib.Path(__file__).parent
ZOO = HERE / "zoo"
WIDTH = 4
ZOO_WIDTH = 6
OPSETS = {"": 17, "ai.onnx.ml": 3}

warnings.filterwarnings("ignore")


def regression_data(width=WIDTH, seed=1, samples=200):
    x, y = make_regression(n_samples=samples, n_features=width, noise=0.5, random_state=seed)
    return x.astype(np.float32), y


def classification_data(classes, width=WIDTH, seed=2, samples=300):
    x, y = make_classification(
        n_samples=samples, n_features=width, n_informative=min(width, 4) - 1, n_redundant=0,
        n_classes=classes, n_clusters_per_class=1, random_state=seed,
    )
    return x.astype(np.float32), y


def session(path):
    options = ort.SessionOptions()
    # One thread: trees are then summed in tree order, as the service sums them.
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def answers(path, inputs):
    """onnxruntime's outputs for `inputs`, by output name; ZipMap's list of
    {class: probability} maps becomes the [rows, classes] table it was made from."""
    sess = session(path)
    names = [output.name for output in sess.get_outputs()]
    values = sess.run(None, {sess.get_inputs()[0].name: inputs})
    outputs = {}
    for name, value in zip(names, values):
        if isinstance(value, list):  # ZipMap
            value = [[row[key] for key in row] for row in value]
        outputs[name] = np.asarray(value).tolist()
    return outputs


def threshold_rows(model_proto, x, count=4):
    """Rows of `x` with one feature set exactly to a split threshold of the model's trees."""
    splits = []
    for node in model_proto.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if "nodes_modes" in attrs:
            modes = [m.decode() for m in attrs["nodes_modes"].strings]
            splits += [(f, v) for f, v, m in zip(attrs["nodes_featureids"].ints, attrs["nodes_values"].floats, modes)
                       if m != "LEAF"]
    rng = np.random.default_rng(7)
    rows = []
    for index in rng.choice(len(splits), size=min(count, len(splits)), replace=False):
        feature, threshold = splits[index]
        row = x[len(rows)].copy()
        row[feature] = np.float32(threshold)
        rows.append(row)
    return rows


def export(model, x, path, zipmap=True, rows=8):
    """Write `model` as ONNX and return its test inputs and onnxruntime's answers."""
    options = None
    if not zipmap and hasattr(model, "classes_"):
        options = {id(model): {"zipmap": False}}
    onx = to_onnx(model, x[:1], options=options, target_opset=OPSETS)
    path.write_bytes(onx.SerializeToString())
    inputs = list(x[:rows]) + threshold_rows(onx, x[rows:])
    inputs = np.array(inputs, dtype=np.float32)
    return {"inputs": inputs.tolist(), "outputs": answers(path, inputs)}


def register_boosters():
    import lightgbm
    import xgboost
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    update_registered_converter(xgboost.XGBClassifier, "XGBoostXGBClassifier",
                                calculate_linear_classifier_output_shapes, convert_xgboost, options=options)
    update_registered_converter(xgboost.XGBRegressor, "XGBoostXGBRegressor",
                                calculate_linear_regressor_output_shapes, convert_xgboost)
    update_registered_converter(lightgbm.LGBMClassifier, "LightGbmLGBMClassifier",
                                calculate_linear_classifier_output_shapes, convert_lightgbm, options=options)
    update_registered_converter(lightgbm.LGBMRegressor, "LightGbmLGBMRegressor",
                                calculate_linear_regressor_output_shapes, convert_lightgbm)
    return xgboost, lightgbm


def to_tree_ensemble_v5(onx):
    """Rewrite a model's TreeEnsembleRegressor as ai.onnx.ml opset 5's TreeEnsemble (no
    exporter writes it yet): internal nodes and leaves in separate lists, children named by
    index with a flag saying which list."""
    graph = onx.graph
    old = next(n for n in graph.node if n.op_type == "TreeEnsembleRegressor")
    a = {attr.name: helper.get_attribute_value(attr) for attr in old.attribute}
    modes = [m.decode() for m in a["nodes_modes"]]
    key = list(zip(a["nodes_treeids"], a["nodes_nodeids"]))
    internal = [i for i, m in enumerate(modes) if m != "LEAF"]
    internal_index = {key[i]: k for k, i in enumerate(internal)}
    weights = {(t, n): w for t, n, w in zip(a["target_treeids"], a["target_nodeids"], a["target_weights"])}
    leaves, leaf_index = [], {}
    for i, m in enumerate(modes):
        if m == "LEAF":
            leaf_index[key[i]] = len(leaves)
            leaves.append(weights[key[i]])
    code = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5}

    def child(i, side):
        target = (a["nodes_treeids"][i], a[side][i])
        return (0, internal_index[target]) if target in internal_index else (1, leaf_index[target])

    trues = [child(i, "nodes_truenodeids") for i in internal]
    falses = [child(i, "nodes_falsenodeids") for i in internal]
    roots = [internal_index[key[i]] for i in internal if a["nodes_nodeids"][i] == 0]
    new = helper.make_node(
        "TreeEnsemble", list(old.input), list(old.output), domain="ai.onnx.ml", name="TreeEnsembleV5",
        n_targets=1, aggregate_function=1, post_transform=0, tree_roots=roots,
        nodes_featureids=[a["nodes_featureids"][i] for i in internal],
        nodes_splits=numpy_helper.from_array(np.array([a["nodes_values"][i] for i in internal], np.float32)),
        nodes_modes=numpy_helper.from_array(np.array([code[modes[i]] for i in internal], np.uint8)),
        nodes_truenodeids=[t for _, t in trues], nodes_trueleafs=[f for f, _ in trues],
        nodes_falsenodeids=[t for _, t in falses], nodes_falseleafs=[f for f, _ in falses],
        leaf_targetids=[0] * len(leaves),
        leaf_weights=numpy_helper.from_array(np.array(leaves, np.float32)),
    )
    nodes = [new if n is old else n for n in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    for opset in onx.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = 5
    return onx


def zoo():
    """The models every test compares with onnxruntime; `index.json` says what each is."""
    from sklearn import ensemble, impute, linear_model, naive_bayes, neighbors, neural_network, preprocessing, svm, tree
    from sklearn.pipeline import make_pipeline

    xgboost, lightgbm = register_boosters()
    ZOO.mkdir(exist_ok=True)
    for stale in ZOO.glob("*.onnx"):
        stale.unlink()
    regressors = {
        "linear_regression": linear_model.LinearRegression(),
        "minmax_ridge": make_pipeline(preprocessing.MinMaxScaler(), linear_model.Ridge()),
        "standard_scaler_linear": make_pipeline(preprocessing.StandardScaler(), linear_model.LinearRegression()),
        "imputer_normalizer_ridge": make_pipeline(impute.SimpleImputer(), preprocessing.Normalizer(), linear_model.Ridge()),
        "binarizer_linear": make_pipeline(preprocessing.Binarizer(threshold=0.1), linear_model.LinearRegression()),
        "svr_rbf": svm.SVR(),
        "svr_poly": svm.SVR(kernel="poly", degree=3),
        "svr_sigmoid": svm.SVR(kernel="sigmoid", gamma=0.01),
        "linear_svr": svm.LinearSVR(max_iter=5000, random_state=0),
        "decision_tree_regressor": tree.DecisionTreeRegressor(max_depth=6, random_state=0),
        "random_forest_regressor": ensemble.RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0),
        "extra_trees_regressor": ensemble.ExtraTreesRegressor(n_estimators=10, max_depth=6, random_state=0),
        "gradient_boosting_regressor": ensemble.GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0),
        "knn_regressor": neighbors.KNeighborsRegressor(),
        "mlp_regressor": neural_network.MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0),
        "xgboost_regressor": xgboost.XGBRegressor(n_estimators=20, max_depth=4, n_jobs=1, random_state=0),
        "lightgbm_regressor": lightgbm.LGBMRegressor(n_estimators=20, num_leaves=15, n_jobs=1, random_state=0, verbose=-1),
    }
    classifiers = {
        "logistic_binary": (2, linear_model.LogisticRegression()),
        "logistic_multiclass": (3, linear_model.LogisticRegression(max_iter=500)),
        "standard_scaler_logistic": (3, make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())),
        "linear_svc": (3, svm.LinearSVC(random_state=0)),
        "svc_binary": (2, svm.SVC(probability=True, random_state=0)),
        "svc_multiclass": (3, svm.SVC(probability=True, random_state=0)),
        "svc_multiclass_decision": (3, svm.SVC(random_state=0)),
        "svc_linear_binary": (2, svm.SVC(kernel="linear", probability=True, random_state=0)),
        "decision_tree_classifier": (3, tree.DecisionTreeClassifier(max_depth=5, random_state=0)),
        "random_forest_binary": (2, ensemble.RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)),
        "random_forest_multiclass": (3, ensemble.RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)),
        "extra_trees_multiclass": (3, ensemble.ExtraTreesClassifier(n_estimators=10, max_depth=6, random_state=0)),
        "gradient_boosting_binary": (2, ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0)),
        "gradient_boosting_multiclass": (3, ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0)),
        "knn_classifier": (3, neighbors.KNeighborsClassifier()),
        "mlp_classifier": (3, neural_network.MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)),
        "gaussian_nb": (3, naive_bayes.GaussianNB()),
        "xgboost_binary": (2, xgboost.XGBClassifier(n_estimators=20, max_depth=4, n_jobs=1, random_state=0)),
        "xgboost_multiclass": (3, xgboost.XGBClassifier(n_estimators=20, max_depth=4, n_jobs=1, random_state=0)),
        "lightgbm_binary": (2, lightgbm.LGBMClassifier(n_estimators=20, num_leaves=15, n_jobs=1, random_state=0, verbose=-1)),
        "lightgbm_multiclass": (3, lightgbm.LGBMClassifier(n_estimators=20, num_leaves=15, n_jobs=1, random_state=0, verbose=-1)),
    }
    index = {}
    x, y = regression_data(ZOO_WIDTH, seed=11)
    for name, model in regressors.items():
        index[name] = {"task": "regression", **export(model.fit(x, y), x, ZOO / f"{name}.onnx")}
    for name, (classes, model) in classifiers.items():
        x, y = classification_data(classes, ZOO_WIDTH, seed=12 + classes)
        index[name] = {"task": "classification", **export(model.fit(x, y), x, ZOO / f"{name}.onnx")}
    # String class labels, and a classifier exported without ZipMap.
    x, y = classification_data(3, ZOO_WIDTH, seed=15)
    labels = np.array(["cat", "dog", "fish"])[y]
    model = tree.DecisionTreeClassifier(max_depth=4, random_state=0).fit(x, labels)
    index["decision_tree_string_labels"] = {
        "task": "classification", **export(model, x, ZOO / "decision_tree_string_labels.onnx", zipmap=False)}
    # Categorical columns one-hot encoded; the test rows include unknown categories (4,
    # -1) and a fraction, which onnxruntime truncates.
    from sklearn.preprocessing import OneHotEncoder
    rng = np.random.default_rng(17)
    x = rng.integers(0, 4, size=(200, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 3).astype(int)
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), linear_model.LogisticRegression()).fit(x, y)
    probe = np.vstack([x[:6], [[4, 0, 1], [-1, 3, 2.7]]]).astype(np.float32)
    index["one_hot_logistic"] = {
        "task": "classification", **export(model, probe, ZOO / "one_hot_logistic.onnx")}
    # handle_unknown="error" becomes zeros=0: an unknown category is refused (the
    # service answers 400; onnxruntime raises), so the test rows hold known ones only.
    model = make_pipeline(OneHotEncoder(), linear_model.LinearRegression()).fit(x, x[:, 0] * 2 - x[:, 2])
    index["one_hot_strict_linear"] = {
        "task": "regression", **export(model, x, ZOO / "one_hot_strict_linear.onnx")}
    # An operator the service does not implement, to show the refusal: one line at
    # start-up naming the operator and the node. skl2onnx's documented `optim: cdist`
    # option computes KNN distances with onnxruntime's own CDist (domain com.microsoft).
    x, y = classification_data(3, ZOO_WIDTH, seed=18)
    model = neighbors.KNeighborsClassifier().fit(x, y)
    onx = to_onnx(model, x[:1], options={id(model): {"optim": "cdist"}}, target_opset=OPSETS)
    (ZOO / "knn_cdist.onnx").write_bytes(onx.SerializeToString())
    assert answers(ZOO / "knn_cdist.onnx", x[:2]), "onnxruntime serves it"
    index["knn_cdist"] = {"task": "classification", "expect": "refused: CDist"}
    # ai.onnx.ml opset 5's TreeEnsemble, rewritten from a forest.
    x, y = regression_data(ZOO_WIDTH, seed=16)
    forest = ensemble.RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0).fit(x, y)
    onx = to_onnx(forest, x[:1], target_opset={"": 21, "ai.onnx.ml": 3})
    inputs = np.array(list(x[:8]) + threshold_rows(onx, x[8:]), np.float32)
    path = ZOO / "tree_ensemble_v5.onnx"
    path.write_bytes(to_tree_ensemble_v5(onx).SerializeToString())
    index["tree_ensemble_v5"] = {"task": "regression", "inputs": inputs.tolist(), "outputs": answers(path, inputs)}
    (ZOO / "index.json").write_text(json.dumps(index, indent=1) + "\n")


def fixtures():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression

    expected = {}
    x, y = regression_data()
    expected["linear_regression"] = export(LinearRegression().fit(x, y), x, HERE / "linear_regression.onnx")
    x, y = classification_data(3)
    expected["logistic_regression"] = export(
        LogisticRegression(max_iter=500).fit(x, y), x, HERE / "logistic_regression.onnx", zipmap=False)
    x, y = classification_data(2)
    expected["random_forest"] = export(
        RandomForestClassifier(n_estimators=5, max_depth=3, random_state=3).fit(x, y), x,
        HERE / "random_forest.onnx", zipmap=False)
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def large(directory):
    """The benchmark's models, at the sizes users ship: a 100-tree, depth-10 random forest
    on 20 features, and a 300-tree, depth-5 gradient-boosting regressor (each a few MB, so
    generated rather than committed). Each is written as ONNX for us and onnxruntime, and
    as joblib for MLServer's scikit-learn runtime."""
    import joblib
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

    directory.mkdir(parents=True, exist_ok=True)
    x, y = classification_data(2, width=20, seed=21, samples=20000)
    forest = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0, n_jobs=1).fit(x, y)
    (directory / "forest_100x10.onnx").write_bytes(
        to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}}, target_opset=OPSETS).SerializeToString())
    joblib.dump(forest, directory / "forest_100x10.joblib")
    x, y = regression_data(width=20, seed=22, samples=20000)
    booster = GradientBoostingRegressor(n_estimators=300, max_depth=5, random_state=0).fit(x, y)
    (directory / "boosting_300x5.onnx").write_bytes(to_onnx(booster, x[:1], target_opset=OPSETS).SerializeToString())
    joblib.dump(booster, directory / "boosting_300x5.joblib")


if __name__ == "__main__":
    # skl2onnx lists a model's opsets from a set of strings, whose order follows Python's
    # per-process hash seed: fix the seed so that the files come out byte for byte.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=pathlib.Path, help="write the benchmark's large models into this directory")
    arguments = parser.parse_args()
    if arguments.large:
        large(arguments.large)
    else:
        fixtures()
        zoo()

//! The ONNX-ML operators (domain `ai.onnx.ml`) that scikit-learn, XGBoost and LightGBM
//! exports use, computed by our own code and registered into tract over its own versions.
//!
//! Each operator parses its node's attributes once, at load time, into a [`Kernel`]: a
//! plain value that computes the operator on whole tensors. [`kernel::MlOp`] adapts any
//! kernel to tract's inference and typed-graph traits, so an operator module holds only
//! its attributes and its arithmetic. The semantics follow onnxruntime where the ONNX
//! specification leaves room (binary classifiers, SVM probabilities, rank rules), because
//! onnxruntime is what users compare against.

mod array_feature_extractor;
mod attrs;
mod binarizer;
mod checked_gather;
mod feature_vectorizer;
mod imputer;
mod kernel;
mod label_encoder;
mod normalizer;
mod one_hot_encoder;
mod post_transform;
mod scaler;
mod shape_cast;
mod string_normalizer;
mod svm;
mod tfidf_vectorizer;
mod tree;
mod zipmap;

use tract_onnx::Onnx;

/// tract's ONNX framework with our ONNX-ML operators registered over its own.
pub(crate) fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    let register = &mut onnx.op_register;
    if let Some(cast) = register.0.get("Cast") {
        let _ = shape_cast::TRACT_CAST.set(*cast);
    }
    register.insert("Cast", shape_cast::parse);
    register.insert("Gather", checked_gather::parse);
    register.insert("ArrayFeatureExtractor", array_feature_extractor::parse);
    register.insert("Binarizer", binarizer::parse);
    register.insert("FeatureVectorizer", feature_vectorizer::parse);
    register.insert("Imputer", imputer::parse);
    register.insert("LabelEncoder", label_encoder::parse);
    register.insert("Normalizer", normalizer::parse);
    register.insert("OneHotEncoder", one_hot_encoder::parse);
    register.insert("Scaler", scaler::parse);
    register.insert("SVMClassifier", svm::parse_classifier);
    register.insert("SVMRegressor", svm::parse_regressor);
    register.insert("StringNormalizer", string_normalizer::parse);
    register.insert("TfIdfVectorizer", tfidf_vectorizer::parse);
    register.insert("TreeEnsemble", tree::parse_ensemble);
    register.insert("TreeEnsembleClassifier", tree::parse_classifier);
    register.insert("TreeEnsembleRegressor", tree::parse_regressor);
    register.insert("ZipMap", zipmap::parse);
    onnx
}

/// The operators a graph uses that neither tract nor we implement, as (operator, node).
pub(crate) fn missing_operators<'a>(
    onnx: &Onnx,
    graph: &'a tract_onnx::pb::GraphProto,
) -> Vec<(&'a str, &'a str)> {
    let mut missing = Vec::new();
    let mut graphs = vec![graph];
    while let Some(graph) = graphs.pop() {
        for node in &graph.node {
            if !onnx.op_register.0.contains_key(&node.op_type) {
                missing.push((node.op_type.as_str(), node.name.as_str()));
            }
            // Loops and Scans carry their bodies as graph attributes.
            graphs.extend(node.attribute.iter().filter_map(|a| a.g.as_ref()));
            graphs.extend(node.attribute.iter().flat_map(|a| a.graphs.iter()));
        }
    }
    missing
}

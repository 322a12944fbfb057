//! `SVMClassifier` and `SVMRegressor` (scikit-learn's SVC and SVR exports), computed as
//! onnxruntime does: kernels in single precision, one-vs-one votes (a positive pairwise
//! decision is a vote for the lower class), Platt-scaled pairwise probabilities coupled
//! by libsvm's iteration, and the label taken from the votes, not the probabilities.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::{AttrError, Attrs};
use crate::model::ml::kernel::{self, Kernel};
use crate::model::ml::post_transform::{PostTransform, logistic, probit};
use crate::model::ml::tree::output::{Classes, Label};

#[derive(Debug, Clone, Copy, PartialEq)]
enum KernelFunction {
    Linear,
    Poly { gamma: f32, coef0: f32, degree: f32 },
    Rbf { gamma: f32 },
    Sigmoid { gamma: f32, coef0: f32 },
}

impl KernelFunction {
    fn parse(attrs: &Attrs<'_>) -> Result<Self, AttrError> {
        let kind = attrs.string("kernel_type")?.unwrap_or("LINEAR");
        let params = attrs.floats("kernel_params");
        let param = |i: usize| -> Result<f32, AttrError> {
            params.get(i).copied().ok_or_else(|| {
                attrs.error(
                    "kernel_params",
                    format!("a {kind} kernel needs [gamma, coef0, degree]"),
                )
            })
        };
        Ok(match kind {
            "LINEAR" => KernelFunction::Linear,
            "POLY" => KernelFunction::Poly {
                gamma: param(0)?,
                coef0: param(1)?,
                degree: param(2)?,
            },
            "RBF" => KernelFunction::Rbf { gamma: param(0)? },
            "SIGMOID" => KernelFunction::Sigmoid {
                gamma: param(0)?,
                coef0: param(1)?,
            },
            other => return Err(attrs.error("kernel_type", format!("unknown kernel {other:?}"))),
        })
    }

    fn eval(self, x: &[f32], sv: &[f32]) -> f32 {
        let dot = || x.iter().zip(sv).fold(0.0_f32, |sum, (a, b)| a.mul_add(*b, sum));
        match self {
            KernelFunction::Linear => dot(),
            KernelFunction::Poly { gamma, coef0, degree } => {
                let v = gamma * dot() + coef0;
                match degree {
                    2.0 => v * v,
                    3.0 => v * v * v,
                    _ => v.powf(degree),
                }
            }
            KernelFunction::Rbf { gamma } => {
                let distance: f32 = x.iter().zip(sv).map(|(a, b)| (a - b) * (a - b)).sum();
                (-gamma * distance).exp()
            }
            KernelFunction::Sigmoid { gamma, coef0 } => (gamma * dot() + coef0).tanh(),
        }
    }
}

/// Support vectors and their kernel, shared by both operators.
#[derive(Debug, Clone, PartialEq)]
struct Support {
    function: KernelFunction,
    /// Row-major, `features` values each.
    vectors: Vec<f32>,
    features: usize,
}

impl Support {
    fn count(&self) -> usize {
        self.vectors.len().checked_div(self.features).unwrap_or(0)
    }

    /// The kernel between `x` and every support vector.
    fn kernel_row(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            self.vectors
                .chunks_exact(self.features)
                .map(|sv| self.function.eval(x, sv)),
        );
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Classifier {
    /// libsvm's SVC: support vectors grouped by class, one decision per pair.
    Svc {
        support: Support,
        /// First support vector and count, per class.
        groups: Vec<(usize, usize)>,
        /// `[classes - 1][vectors]`.
        coefficients: Vec<f32>,
        rho: Vec<f32>,
        /// Platt scaling per pair, when the model gives probabilities.
        platt: Option<(Vec<f32>, Vec<f32>)>,
    },
    /// liblinear: one weight vector per class.
    Linear {
        coefficients: Vec<f32>,
        rho: f32,
        features: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SvmClassifier {
    classes: Classes,
    model: Classifier,
    post_transform: PostTransform,
    weights_all_positive: bool,
}

pub(crate) fn parse_classifier(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let classes = Classes::parse_named(&attrs, "classlabels_ints")?;
    let k = classes.len();
    let per_class = attrs.indices("vectors_per_class")?;
    let vectors: usize = per_class.iter().sum();
    let coefficients: Vec<f32> = attrs.floats("coefficients").to_vec();
    let rho: Vec<f32> = attrs.floats("rho").to_vec();
    let post_transform = PostTransform::parse(&attrs)?;
    let weights_all_positive = coefficients.iter().all(|c| *c >= 0.0);
    let model = if vectors > 0 {
        if per_class.len() != k {
            return Err(attrs
                .error(
                    "vectors_per_class",
                    format!("{} counts for {k} classes", per_class.len()),
                )
                .into());
        }
        let sv = attrs.floats("support_vectors").to_vec();
        if sv.is_empty() || !sv.len().is_multiple_of(vectors) {
            return Err(attrs
                .error(
                    "support_vectors",
                    format!("{} values for {vectors} vectors", sv.len()),
                )
                .into());
        }
        let pairs = k * (k - 1) / 2;
        if coefficients.len() < (k - 1) * vectors {
            return Err(attrs
                .error(
                    "coefficients",
                    format!("{} values, expected {}", coefficients.len(), (k - 1) * vectors),
                )
                .into());
        }
        if rho.len() < pairs {
            return Err(attrs
                .error("rho", format!("{} values for {pairs} class pairs", rho.len()))
                .into());
        }
        let (prob_a, prob_b) = (attrs.floats("prob_a").to_vec(), attrs.floats("prob_b").to_vec());
        let platt = match (prob_a.is_empty(), prob_b.is_empty()) {
            (true, true) => None,
            _ if prob_a.len() < pairs || prob_b.len() != prob_a.len() => {
                return Err(attrs
                    .error("prob_a", format!("prob_a and prob_b need {pairs} values each"))
                    .into());
            }
            _ => Some((prob_a, prob_b)),
        };
        let mut groups = Vec::with_capacity(k);
        let mut start = 0;
        for count in per_class {
            groups.push((start, count));
            start += count;
        }
        Classifier::Svc {
            support: Support {
                function: KernelFunction::parse(&attrs)?,
                features: sv.len() / vectors,
                vectors: sv,
            },
            groups,
            coefficients,
            rho,
            platt,
        }
    } else {
        if k == 0 || coefficients.is_empty() || !coefficients.len().is_multiple_of(k) {
            return Err(attrs
                .error(
                    "coefficients",
                    format!("{} values for {k} classes", coefficients.len()),
                )
                .into());
        }
        Classifier::Linear {
            features: coefficients.len() / k,
            coefficients,
            rho: rho.first().copied().unwrap_or(0.0),
        }
    };
    kernel::op(SvmClassifier {
        classes,
        model,
        post_transform,
        weights_all_positive,
    })
}

impl SvmClassifier {
    fn features(&self) -> usize {
        match &self.model {
            Classifier::Svc { support, .. } => support.features,
            Classifier::Linear { features, .. } => *features,
        }
    }

    /// How many score columns a row has.
    fn columns(&self) -> usize {
        let k = self.classes.len();
        match &self.model {
            Classifier::Svc { platt: None, .. } if k > 2 => k * (k - 1) / 2,
            _ => k,
        }
    }

    /// One row: the label and its score columns.
    fn row(&self, x: &[f32], kernel_row: &mut Vec<f32>) -> (Label, Vec<f32>) {
        let k = self.classes.len();
        match &self.model {
            Classifier::Svc {
                support,
                groups,
                coefficients,
                rho,
                platt,
            } => {
                support.kernel_row(x, kernel_row);
                let vectors = support.count();
                let coefficient = |row: usize, vector: usize| coefficients[row * vectors + vector];
                let mut votes = vec![0u32; k];
                let mut decisions = Vec::with_capacity(k * (k - 1) / 2);
                for i in 0..k {
                    for j in i + 1..k {
                        let (start_i, count_i) = groups[i];
                        let (start_j, count_j) = groups[j];
                        // Products in single precision, their sum in double, as onnxruntime.
                        let mut sum = 0.0_f64;
                        for (m, k_m) in kernel_row.iter().enumerate().skip(start_i).take(count_i) {
                            sum += f64::from(coefficient(j - 1, m) * k_m);
                        }
                        for (m, k_m) in kernel_row.iter().enumerate().skip(start_j).take(count_j) {
                            sum += f64::from(coefficient(i, m) * k_m);
                        }
                        sum += f64::from(rho[decisions.len()]);
                        votes[if sum > 0.0 { i } else { j }] += 1;
                        decisions.push(sum as f32);
                    }
                }
                // The first class with the most votes.
                let winner = (0..k).fold(0, |best, c| if votes[c] > votes[best] { c } else { best });
                let scores = match platt {
                    Some((a, b)) => {
                        let mut pairwise = vec![vec![0.0_f32; k]; k];
                        let pairs = (0..k).flat_map(|i| (i + 1..k).map(move |j| (i, j)));
                        for (pair, (i, j)) in pairs.enumerate() {
                            let p = 1.0 - logistic(decisions[pair] * a[pair] + b[pair]);
                            let p = p.clamp(1e-7, 1.0 - 1e-7);
                            pairwise[i][j] = p;
                            pairwise[j][i] = 1.0 - p;
                        }
                        let mut p = couple(&pairwise);
                        self.post_transform.apply_batched(&mut p);
                        p
                    }
                    None if k == 2 => {
                        let s = decisions[0];
                        match self.post_transform {
                            PostTransform::None => vec![-s, s],
                            PostTransform::Logistic => vec![logistic(-s), logistic(s)],
                            PostTransform::Probit => vec![probit(s), 0.0],
                            PostTransform::Softmax | PostTransform::SoftmaxZero => vec![1.0 - s, s],
                        }
                    }
                    None => {
                        let mut d = decisions;
                        self.post_transform.apply_batched(&mut d);
                        d
                    }
                };
                (Label::Class(winner), scores)
            }
            Classifier::Linear {
                coefficients,
                rho,
                features,
            } => {
                let raw: Vec<f32> = coefficients
                    .chunks_exact(*features)
                    .map(|w| x.iter().zip(w).fold(0.0_f32, |s, (a, b)| a.mul_add(*b, s)) + rho)
                    .collect();
                let best = (0..raw.len()).fold(0, |b, c| if raw[c] > raw[b] { c } else { b });
                let max = raw[best];
                let label = if k == 2
                    && ((self.weights_all_positive && max >= 0.5)
                        || (!self.weights_all_positive && max > 0.0))
                {
                    Label::Class(1)
                } else {
                    Label::Class(best)
                };
                let mut scores = raw;
                if scores.len() > 1 {
                    self.post_transform.apply_batched(&mut scores);
                } else if self.post_transform == PostTransform::Probit {
                    scores[0] = probit(scores[0]);
                }
                (label, scores)
            }
        }
    }
}

/// libsvm's pairwise coupling (Wu, Lin and Weng, method 2), in single precision with
/// onnxruntime's fixed 100 iterations.
// Indexed loops, to read side by side with libsvm's `multiclass_probability`.
#[allow(clippy::needless_range_loop)]
fn couple(r: &[Vec<f32>]) -> Vec<f32> {
    let k = r.len();
    let mut q = vec![vec![0.0_f32; k]; k];
    for i in 0..k {
        for j in 0..i {
            q[i][i] += r[j][i] * r[j][i];
            q[i][j] = q[j][i];
        }
        for j in i + 1..k {
            q[i][i] += r[j][i] * r[j][i];
            q[i][j] = -r[j][i] * r[i][j];
        }
    }
    let mut p = vec![1.0 / k as f32; k];
    let mut qp = vec![0.0_f32; k];
    let eps = 0.005 / k as f32;
    for _ in 0..100 {
        let mut pqp = 0.0_f32;
        for i in 0..k {
            qp[i] = 0.0;
            for j in 0..k {
                qp[i] += q[i][j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let max_error = qp.iter().fold(0.0_f32, |m, v| m.max((v - pqp).abs()));
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i][i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i][i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i][j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

fn rows_f32(input: &Tensor, features: usize, name: &str) -> TractResult<(usize, Vec<f32>)> {
    let (rows, width) = kernel::batch_shape(input)?;
    ensure!(
        width == features,
        "{name}: rows have {width} features, the model {features}"
    );
    let cast = input.cast_to::<f32>()?;
    Ok((rows, cast.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
}

impl Kernel for SvmClassifier {
    fn name(&self) -> &'static str {
        "SVMClassifier"
    }

    fn output_count(&self) -> usize {
        2
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let batch = kernel::batch_dim(inputs[0].1);
        Ok(tvec![
            (self.classes.datum_type(), tvec![batch.clone()]),
            (DatumType::F32, tvec![batch, self.columns().into()]),
        ])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (rows, x) = rows_f32(&inputs[0], self.features(), "SVMClassifier")?;
        let features = self.features();
        let mut labels = Vec::with_capacity(rows);
        let mut scores = Vec::with_capacity(rows * self.columns());
        let mut kernel_row = Vec::new();
        for row in x.chunks_exact(features.max(1)).take(rows) {
            let (label, row_scores) = self.row(row, &mut kernel_row);
            labels.push(label);
            scores.extend(row_scores);
        }
        Ok(tvec![
            self.classes.labels(&labels)?,
            kernel::matrix_f32(rows, self.columns(), scores)?
        ])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SvmRegressor {
    support: Support,
    coefficients: Vec<f32>,
    rho: f32,
    one_class: bool,
}

pub(crate) fn parse_regressor(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let coefficients = attrs.floats("coefficients").to_vec();
    let rho = *attrs
        .floats("rho")
        .first()
        .ok_or_else(|| attrs.error("rho", "missing"))?;
    let n_supports = attrs.int("n_supports").unwrap_or(0).max(0) as usize;
    let support = if n_supports > 0 {
        let vectors = attrs.floats("support_vectors").to_vec();
        if !vectors.len().is_multiple_of(n_supports) || coefficients.len() < n_supports {
            return Err(attrs
                .error(
                    "support_vectors",
                    format!("{} values for {n_supports} vectors", vectors.len()),
                )
                .into());
        }
        Support {
            function: KernelFunction::parse(&attrs)?,
            features: vectors.len() / n_supports,
            vectors,
        }
    } else {
        // No support vectors: a linear model whose coefficients are the weights.
        Support {
            function: KernelFunction::Linear,
            features: coefficients.len(),
            vectors: coefficients.clone(),
        }
    };
    let coefficients = if n_supports > 0 { coefficients } else { vec![1.0] };
    kernel::op(SvmRegressor {
        support,
        coefficients,
        rho,
        one_class: attrs.int("one_class").unwrap_or(0) != 0,
    })
}

impl Kernel for SvmRegressor {
    fn name(&self) -> &'static str {
        "SVMRegressor"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        Ok(tvec![(
            DatumType::F32,
            tvec![kernel::batch_dim(inputs[0].1), 1.into()]
        )])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let features = self.support.features;
        let (rows, x) = rows_f32(&inputs[0], features, "SVMRegressor")?;
        let mut kernel_row = Vec::new();
        let mut out = Vec::with_capacity(rows);
        for row in x.chunks_exact(features.max(1)).take(rows) {
            self.support.kernel_row(row, &mut kernel_row);
            let y = kernel_row
                .iter()
                .zip(&self.coefficients)
                .fold(0.0_f32, |s, (k, c)| c.mul_add(*k, s))
                + self.rho;
            // post_transform is parsed by onnxruntime but never applied; nor here.
            out.push(if !self.one_class {
                y
            } else if y > 0.0 {
                1.0
            } else {
                -1.0
            });
        }
        Ok(tvec![kernel::matrix_f32(rows, 1, out)?])
    }
}

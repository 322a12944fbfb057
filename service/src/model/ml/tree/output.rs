//! From an ensemble's raw scores to the operator's outputs, exactly as onnxruntime
//! computes them — its quirks included, because users compare our answers with its.
//!
//! - One target (or one class): scores are final after the base value; only PROBIT
//!   applies, LOGISTIC and SOFTMAX are ignored.
//! - Several targets: a target no reached leaf scored is 0, whatever its base value.
//! - Classifiers ignore `aggregate_function` (always SUM). With more than two classes the
//!   label is the first highest score among the classes scored, before the transform.
//! - Two classes whose leaves all weigh one class id (skl2onnx's binary forests and
//!   boosters, XGBoost, LightGBM) are the "binary case": the label compares the one score
//!   with 0.5 (every weight non-negative: probabilities) or 0 (margins), and the score
//!   fills two columns, `[1-s, s]`, `[-s, s]` or `[σ(-s), σ(s)]`.

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::{AttrError, Attrs};
use crate::model::ml::kernel;
use crate::model::ml::post_transform::{PostTransform, logistic, probit};
use crate::model::ml::tree::forest::{Aggregate, Number, Scores, Spec};

/// A classifier's labels: integers or strings, in the order of its score columns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Classes {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

/// What a classifier picked for a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Label {
    /// The class at this index.
    Class(usize),
    /// onnxruntime's raw 1 or 0 (two classes scored on both, or a single class): the
    /// integer itself, or the string label at that index.
    Raw(bool),
}

impl Classes {
    pub(crate) fn parse(attrs: &Attrs<'_>) -> Result<Self, AttrError> {
        Self::parse_named(attrs, "classlabels_int64s")
    }

    /// `ints_name` differs between operators (`classlabels_ints` for SVMClassifier).
    pub(crate) fn parse_named(attrs: &Attrs<'_>, ints_name: &str) -> Result<Self, AttrError> {
        let ints = attrs.ints(ints_name);
        let strings = attrs.strings("classlabels_strings")?;
        match (ints.is_empty(), strings.is_empty()) {
            (false, true) => Ok(Classes::Ints(ints.to_vec())),
            (true, false) => Ok(Classes::Strings(
                strings.iter().map(|s| (*s).to_owned()).collect(),
            )),
            (true, true) => Err(attrs.error(ints_name, "no class labels (nor classlabels_strings)")),
            (false, false) => Err(attrs.error("classlabels_strings", "both integer and string class labels")),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Classes::Ints(v) => v.len(),
            Classes::Strings(v) => v.len(),
        }
    }

    pub(crate) fn datum_type(&self) -> DatumType {
        match self {
            Classes::Ints(_) => DatumType::I64,
            Classes::Strings(_) => DatumType::String,
        }
    }

    /// The label tensor for what each row picked.
    pub(crate) fn labels(&self, picked: &[Label]) -> TractResult<TValue> {
        let index = |label: &Label| match *label {
            Label::Class(index) => index,
            Label::Raw(positive) => usize::from(positive),
        };
        Ok(match self {
            Classes::Ints(labels) => {
                let values: Vec<i64> = picked
                    .iter()
                    .map(|label| match *label {
                        Label::Class(index) => labels[index],
                        Label::Raw(positive) => i64::from(positive),
                    })
                    .collect();
                tensor1(&values).into_tvalue()
            }
            Classes::Strings(labels) => {
                let values = picked
                    .iter()
                    .map(|label| {
                        labels
                            .get(index(label))
                            .cloned()
                            .ok_or_else(|| format_err!("no class label at index {}", index(label)))
                    })
                    .collect::<TractResult<Vec<String>>>()?;
                tensor1(&values).into_tvalue()
            }
        })
    }
}

/// The type of a regression's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputType {
    /// Always float (TreeEnsembleRegressor).
    Float,
    /// The input's type (opset 5's TreeEnsemble answers doubles for doubles).
    Input,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Finish {
    Regression {
        base_values: Vec<f64>,
        post_transform: PostTransform,
        n_trees: usize,
        output_type: OutputType,
    },
    Classification {
        classes: Classes,
        base_values: Vec<f64>,
        post_transform: PostTransform,
        /// Two classes, but every leaf weighs the same one class id.
        binary: bool,
        weights_all_positive: bool,
    },
}

/// How a binary classifier's one score fills two columns (onnxruntime's
/// `add_second_class`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Second {
    /// Probabilities: `[1-s, s]`.
    Complement,
    /// Margins: `[-s, s]`.
    Negated,
    /// Nothing: one column.
    None,
}

impl Finish {
    pub(crate) fn classification(
        classes: Classes,
        spec: &Spec,
        base_values: Vec<f64>,
        post_transform: PostTransform,
    ) -> Self {
        let first = spec.leaves.first().map(|leaf| leaf.target);
        Finish::Classification {
            binary: classes.len() == 2 && spec.leaves.iter().all(|leaf| Some(leaf.target) == first),
            weights_all_positive: spec.leaves.iter().all(|leaf| leaf.weight >= 0.0),
            classes,
            base_values,
            post_transform,
        }
    }

    pub(crate) fn output_count(&self) -> usize {
        match self {
            Finish::Regression { .. } => 1,
            Finish::Classification { .. } => 2,
        }
    }

    pub(crate) fn output_facts(
        &self,
        input: DatumType,
        batch: TDim,
        n_targets: usize,
    ) -> TVec<(DatumType, TVec<TDim>)> {
        match self {
            Finish::Regression { output_type, .. } => {
                let datum_type = match output_type {
                    OutputType::Float => DatumType::F32,
                    OutputType::Input => input,
                };
                tvec![(datum_type, tvec![batch, n_targets.into()])]
            }
            Finish::Classification { classes, .. } => tvec![
                (classes.datum_type(), tvec![batch.clone()]),
                (DatumType::F32, tvec![batch, classes.len().into()]),
            ],
        }
    }

    /// The outputs for `rows` rows of raw scores from `n_trees` trees.
    pub(crate) fn outputs<T: Number>(
        &self,
        scores: &Scores<T>,
        rows: usize,
        aggregate: Aggregate,
    ) -> TractResult<TVec<TValue>> {
        match self {
            Finish::Regression {
                base_values,
                post_transform,
                n_trees,
                output_type,
            } => {
                let targets = scores.values.len().checked_div(rows).unwrap_or(0);
                let mut out: Vec<T> = Vec::with_capacity(scores.values.len());
                for row in 0..rows {
                    let first = out.len();
                    for target in 0..targets {
                        let slot = row * targets + target;
                        let (mut value, contributed) = (scores.values[slot], scores.contributed[slot]);
                        if aggregate == Aggregate::Average {
                            value = T::from_f64(value.to_f64() / *n_trees as f64);
                        }
                        let base = match (targets, base_values.len()) {
                            (1, 1) => base_values[0],
                            (t, b) if t == b => base_values[target],
                            _ => 0.0,
                        };
                        value = value.add(T::from_f64(base));
                        // Several targets: one that no leaf scored is 0, base or not.
                        out.push(if targets > 1 && !contributed {
                            T::default()
                        } else {
                            value
                        });
                    }
                    if targets == 1 {
                        if *post_transform == PostTransform::Probit {
                            out[first] = T::from_f64(f64::from(probit(out[first].to_f64() as f32)));
                        }
                    } else if *post_transform != PostTransform::None {
                        let mut row_scores: Vec<f32> =
                            out[first..].iter().map(|v| v.to_f64() as f32).collect();
                        post_transform.apply(&mut row_scores);
                        for (slot, v) in out[first..].iter_mut().zip(row_scores) {
                            *slot = T::from_f64(f64::from(v));
                        }
                    }
                }
                let values: Vec<f64> = out.iter().map(|v| v.to_f64()).collect();
                let tensor = tract_ndarray::Array2::from_shape_vec((rows, targets), values)?.into_tensor();
                let datum_type = match (output_type, T::IS_DOUBLE) {
                    (OutputType::Input, true) => DatumType::F64,
                    _ => DatumType::F32,
                };
                Ok(tvec![tensor.cast_to_dt(datum_type)?.into_owned().into_tvalue()])
            }
            Finish::Classification { classes, .. } => {
                let n = classes.len();
                let mut picked = Vec::with_capacity(rows);
                let mut out = Vec::with_capacity(rows * n);
                // One row's working copies, reused across rows.
                let (mut values, mut scored) = (Vec::with_capacity(n), Vec::with_capacity(n));
                for row in 0..rows {
                    let slots = row * n..(row + 1) * n;
                    values.clear();
                    values.extend_from_slice(&scores.values[slots.clone()]);
                    scored.clear();
                    scored.extend_from_slice(&scores.contributed[slots]);
                    picked.push(self.classify(&mut values, &mut scored, &mut out));
                }
                Ok(tvec![classes.labels(&picked)?, kernel::matrix_f32(rows, n, out)?])
            }
        }
    }

    /// One classifier row: appends its `n_classes` score values to `out` and returns its
    /// label. `values` and `scored` are the row's raw scores, changed in place.
    fn classify<T: Number>(&self, values: &mut [T], scored: &mut [bool], out: &mut Vec<f32>) -> Label {
        let Finish::Classification {
            base_values,
            post_transform,
            binary,
            weights_all_positive,
            classes,
        } = self
        else {
            unreachable!("only classifiers classify")
        };
        let n = classes.len();
        let first = out.len();
        let write = |out: &mut Vec<f32>, values: &[T], scored: &[bool]| {
            out.extend(
                values
                    .iter()
                    .zip(scored)
                    .map(|(v, s)| if *s { v.to_f64() as f32 } else { 0.0 }),
            );
        };
        if n == 1 {
            // A single class: every leaf counted once, as for a single target.
            let mut s = values[0];
            if base_values.len() == 1 {
                s = s.add(T::from_f64(base_values[0]));
            }
            let s32 = s.to_f64() as f32;
            out.push(if *post_transform == PostTransform::Probit {
                probit(s32)
            } else {
                s32
            });
            return Label::Raw(s.to_f64() > 0.0);
        }
        if n > 2 {
            for (k, base) in base_values.iter().enumerate().take(n) {
                if scored[k] {
                    values[k] = values[k].add(T::from_f64(*base));
                } else {
                    values[k] = T::from_f64(*base);
                    scored[k] = true;
                }
            }
            let mut best: Option<usize> = None;
            for k in 0..n {
                if scored[k] && best.is_none_or(|b| values[k] > values[b]) {
                    best = Some(k);
                }
            }
            write(out, values, scored);
            post_transform.apply(&mut out[first..]);
            return Label::Class(best.unwrap_or(0));
        }
        // Two classes.
        let mut second = Second::None;
        let mut columns = 2;
        match base_values.len() {
            2 if scored[1] => {
                // onnxruntime replaces the class-1 sum with base[1] + the class-0 sum.
                values[1] = T::from_f64(base_values[1]).add(values[0]);
                values[0] = T::from_f64(-values[1].to_f64());
            }
            2 => {
                values[1] = values[1].add(T::from_f64(base_values[1]));
                values[0] = values[0].add(T::from_f64(base_values[0]));
            }
            1 => {
                values[0] = values[0].add(T::from_f64(base_values[0]));
                if !scored[1] {
                    columns = 1;
                }
            }
            _ => {
                second = Second::Negated;
                if !scored[1] {
                    columns = 1;
                }
            }
        }
        let positive = if columns == 2 && scored[1] {
            values[1].to_f64()
        } else if scored[0] {
            values[0].to_f64()
        } else {
            0.0
        };
        let label = if *binary {
            let (chosen, how) = if *weights_all_positive {
                (positive > 0.5, Second::Complement)
            } else {
                (positive > 0.0, Second::Negated)
            };
            second = how;
            Label::Class(usize::from(chosen))
        } else {
            Label::Raw(positive > 0.0)
        };
        write(out, &values[..columns], &scored[..columns]);
        if columns == 2 {
            post_transform.apply(&mut out[first..]);
            return label;
        }
        let s = out[first];
        let pair = match (post_transform, second) {
            // onnxruntime leaves the second column unwritten here; we write 0.
            (PostTransform::Probit, _) => [probit(s), 0.0],
            (PostTransform::Logistic, Second::Complement | Second::Negated) => [logistic(-s), logistic(s)],
            (_, Second::Complement) => [1.0 - s, s],
            (_, Second::Negated) => [-s, s],
            (_, Second::None) => [s, 0.0],
        };
        out.truncate(first);
        out.extend(pair);
        label
    }
}

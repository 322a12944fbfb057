//! `OneHotEncoder`: each input value becomes a row of 0s with a 1 at its category's
//! position, so a `[N, 1]` input of categories gives `[N, 1, C]`. scikit-learn's
//! `OneHotEncoder` exports one per column (after a Cast of the column to int64), and
//! `handle_unknown="ignore"` becomes `zeros=1`: an unknown value gives a row of 0s.
//! With `zeros=0` an unknown value is the client's mistake, answered as such.
//!
//! As onnxruntime does, float and double inputs are truncated to int64 before the lookup,
//! and when a category is listed twice its first position counts.

use std::collections::HashMap;
use std::fmt;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::Attrs;
use crate::model::ml::kernel::{self, Kernel};
use crate::model::types::InputRejected;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OneHotEncoder {
    node: String,
    categories: Categories,
    /// How many categories: the width of each one-hot row.
    width: usize,
    /// Whether an unknown value gives a row of 0s (else it is refused).
    zeros: bool,
}

/// Each category's position.
#[derive(Debug, Clone, PartialEq)]
enum Categories {
    Ints(HashMap<i64, usize>),
    Strings(HashMap<String, usize>),
}

pub(crate) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let ints = attrs.ints("cats_int64s");
    let strings = attrs.strings("cats_strings")?;
    let (categories, width) = match (ints.is_empty(), strings.is_empty()) {
        (false, true) => (Categories::Ints(positions(ints.iter().copied())), ints.len()),
        (true, false) => (
            Categories::Strings(positions(strings.iter().map(|s| (*s).to_owned()))),
            strings.len(),
        ),
        _ => {
            return Err(attrs
                .error(
                    "cats_int64s",
                    "exactly one of cats_int64s and cats_strings must list the categories",
                )
                .into());
        }
    };
    kernel::op(OneHotEncoder {
        node: node.name.clone(),
        categories,
        width,
        zeros: attrs.int("zeros").unwrap_or(1) != 0,
    })
}

fn positions<K: std::hash::Hash + Eq>(categories: impl Iterator<Item = K>) -> HashMap<K, usize> {
    let mut positions = HashMap::new();
    for (position, category) in categories.enumerate() {
        positions.entry(category).or_insert(position);
    }
    positions
}

impl Kernel for OneHotEncoder {
    fn name(&self) -> &'static str {
        "OneHotEncoder"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let mut shape: TVec<TDim> = inputs[0].1.into();
        shape.push(self.width.into());
        Ok(tvec![(DatumType::F32, shape)])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let positions: Vec<Option<usize>> = match (&self.categories, input.datum_type()) {
            (Categories::Ints(map), DatumType::F32) => {
                self.look_up(map, input, |v: &f32| truncate(f64::from(*v)))?
            }
            (Categories::Ints(map), DatumType::F64) => self.look_up(map, input, |v: &f64| truncate(*v))?,
            (Categories::Ints(map), DatumType::I64) => self.look_up(map, input, |v: &i64| Some(*v))?,
            // Other integers, and tract's own integer type for a Cast to int64 (TDim).
            (Categories::Ints(map), other) if other.is_integer() || other == DatumType::TDim => {
                self.look_up(map, &*input.cast_to::<i64>()?, |v: &i64| Some(*v))?
            }
            (Categories::Strings(map), DatumType::String) => {
                self.look_up(map, input, |v: &String| Some(v.clone()))?
            }
            (categories, other) => bail!(
                "OneHotEncoder node {:?}: {other:?} input against {} categories",
                self.node,
                match categories {
                    Categories::Ints(_) => "integer",
                    Categories::Strings(_) => "string",
                }
            ),
        };
        let mut out = vec![0f32; positions.len() * self.width];
        for (row, position) in positions.iter().enumerate() {
            if let Some(position) = position {
                out[row * self.width + position] = 1.0;
            }
        }
        let mut shape = input.shape().to_vec();
        shape.push(self.width);
        Ok(tvec![Tensor::from_shape(&shape, &out)?.into_tvalue()])
    }
}

/// onnxruntime's `static_cast<int64_t>`, for the values where it is defined (NaN and
/// values beyond int64 are no category).
fn truncate(value: f64) -> Option<i64> {
    const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;
    (-TWO_TO_63..TWO_TO_63).contains(&value).then_some(value as i64)
}

impl OneHotEncoder {
    /// Each value's category position; `None` for an unknown value when `zeros` allows it.
    fn look_up<V: Datum, K: std::hash::Hash + Eq + fmt::Debug>(
        &self,
        map: &HashMap<K, usize>,
        input: &Tensor,
        key: impl Fn(&V) -> Option<K>,
    ) -> TractResult<Vec<Option<usize>>> {
        let values = input.try_as_plain_ram()?.as_slice::<V>()?;
        values
            .iter()
            .map(|value| {
                let position = key(value).and_then(|key| map.get(&key).copied());
                if position.is_none() && !self.zeros {
                    return Err(InputRejected(format!(
                        "OneHotEncoder node {:?}: {value:?} is not one of its categories",
                        self.node
                    ))
                    .into());
                }
                Ok(position)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(categories: &[i64], zeros: bool) -> OneHotEncoder {
        OneHotEncoder {
            node: "encode".into(),
            categories: Categories::Ints(positions(categories.iter().copied())),
            width: categories.len(),
            zeros,
        }
    }

    fn encode(encoder: &OneHotEncoder, input: Tensor) -> TractResult<Tensor> {
        Ok(encoder.eval(tvec![input.into_tvalue()])?.remove(0).into_tensor())
    }

    #[test]
    fn each_value_becomes_a_row_with_one_at_its_category() {
        let out = encode(&encoder(&[3, 1, 7], true), tensor2(&[[7i64], [3], [5]])).unwrap();
        assert_eq!(out.shape(), &[3, 1, 3]);
        assert_eq!(
            out.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(),
            &[0., 0., 1., 1., 0., 0., 0., 0., 0.],
            "5 is unknown: a row of zeros"
        );
    }

    #[test]
    fn floats_are_truncated_as_onnxruntime_casts_them() {
        let out = encode(&encoder(&[0, 1, -1], true), tensor1(&[1.9f32, -1.5, f32::NAN])).unwrap();
        assert_eq!(
            out.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(),
            &[0., 1., 0., 0., 0., 1., 0., 0., 0.]
        );
    }

    #[test]
    fn an_unknown_value_is_refused_without_zeros_as_the_clients_mistake() {
        let error = encode(&encoder(&[0, 1], false), tensor1(&[1i64, 4])).unwrap_err();
        let rejected = error.downcast_ref::<InputRejected>().expect("an InputRejected");
        assert!(
            rejected.0.contains("4 is not one of its categories"),
            "{rejected}"
        );
    }

    #[test]
    fn a_category_listed_twice_keeps_its_first_position() {
        let out = encode(&encoder(&[2, 2, 5], true), tensor1(&[2i64])).unwrap();
        assert_eq!(
            out.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(),
            &[1., 0., 0.]
        );
    }

    #[test]
    fn string_categories() {
        let encoder = OneHotEncoder {
            node: "encode".into(),
            categories: Categories::Strings(positions(["a", "b"].map(String::from).into_iter())),
            width: 2,
            zeros: true,
        };
        let out = encode(&encoder, tensor1(&["b".to_owned(), "z".to_owned()])).unwrap();
        assert_eq!(
            out.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(),
            &[0., 1., 0., 0.]
        );
    }
}

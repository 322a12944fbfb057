//! `TfIdfVectorizer` (ONNX opset 9): counts the n-grams of a pool in each row of strings
//! or integers, optionally skipping items between an n-gram's members, and weighs the
//! counts. `[C]` gives `[K]`, `[N, C]` gives `[N, K]`, K being one more than the largest
//! of `ngram_indexes`. skl2onnx's text pipelines end their tokenising with it.
//!
//! Counted as onnxruntime counts: for each skip distance, every start position walks the
//! pool's n-grams from that item on, item by item at that distance; unigrams are counted
//! on the first distance only. Weights are indexed by output position, as onnxruntime
//! and the ONNX reference both do (the specification's wording says pool position).

use std::collections::HashMap;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::Attrs;
use crate::model::ml::kernel::{self, Kernel};
use crate::model::types::InputRejected;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weighting {
    Tf,
    Idf,
    TfIdf,
}

/// A pool item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Item {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TfIdfVectorizer {
    min_gram: usize,
    max_gram: usize,
    max_skip: usize,
    weighting: Weighting,
    /// Every prefix of a counted n-gram, each with the output position it counts in when
    /// it is itself an n-gram of the pool.
    grams: HashMap<Vec<Item>, Option<usize>>,
    width: usize,
    weights: Vec<f32>,
}

pub(crate) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let size = |name: &str| -> TractResult<usize> {
        attrs
            .int(name)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| attrs.error(name, "a non-negative integer is required").into())
    };
    let (min_gram, max_gram, max_skip) = (
        size("min_gram_length")?,
        size("max_gram_length")?,
        size("max_skip_count")?,
    );
    if min_gram == 0 || min_gram > max_gram {
        return Err(attrs
            .error(
                "min_gram_length",
                "must be at least 1 and at most max_gram_length",
            )
            .into());
    }
    let weighting = match attrs.string("mode")?.unwrap_or("") {
        "TF" => Weighting::Tf,
        "IDF" => Weighting::Idf,
        "TFIDF" => Weighting::TfIdf,
        other => {
            return Err(attrs
                .error("mode", format!("{other:?} is not TF, IDF or TFIDF"))
                .into());
        }
    };
    let pool: Vec<Item> = if attrs.has("pool_strings") {
        attrs
            .strings("pool_strings")?
            .into_iter()
            .map(|s| Item::Str(s.to_owned()))
            .collect()
    } else {
        attrs.ints("pool_int64s").iter().map(|i| Item::Int(*i)).collect()
    };
    let starts = attrs.indices("ngram_counts")?;
    let indexes = attrs.indices("ngram_indexes")?;
    let width = indexes.iter().max().map_or(0, |m| m + 1);
    let mut grams = HashMap::new();
    let mut id = 0;
    for (level, start) in starts.iter().enumerate() {
        let n = level + 1;
        let end = starts.get(level + 1).copied().unwrap_or(pool.len());
        if *start > end || end > pool.len() || (end - start) % n != 0 {
            return Err(attrs
                .error(
                    "ngram_counts",
                    format!("the {n}-grams do not fill the pool evenly"),
                )
                .into());
        }
        for gram in pool[*start..end].chunks(n) {
            if (min_gram..=max_gram).contains(&n) {
                let position = *indexes
                    .get(id)
                    .ok_or_else(|| attrs.error("ngram_indexes", "fewer entries than n-grams"))?;
                for prefix in 1..n {
                    grams.entry(gram[..prefix].to_vec()).or_insert(None);
                }
                grams.insert(gram.to_vec(), Some(position));
            }
            id += 1;
        }
    }
    let weights = attrs.floats("weights").to_vec();
    if !weights.is_empty() && weights.len() != indexes.len() {
        return Err(attrs
            .error("weights", "one weight per n-gram index is required")
            .into());
    }
    kernel::op(TfIdfVectorizer {
        min_gram,
        max_gram,
        max_skip,
        weighting,
        grams,
        width,
        weights,
    })
}

impl TfIdfVectorizer {
    /// The weighted counts of one row.
    fn row(&self, items: &[Item], out: &mut [f32]) {
        let mut min = self.min_gram;
        let mut gram = Vec::with_capacity(self.max_gram);
        for distance in 1..=self.max_skip + 1 {
            for start in 0..items.len() {
                if start + distance * (min - 1) >= items.len() {
                    break;
                }
                gram.clear();
                for step in 0..self.max_gram {
                    let Some(item) = items.get(start + step * distance) else {
                        break;
                    };
                    gram.push(item.clone());
                    match self.grams.get(&gram) {
                        None => break,
                        Some(Some(position)) if gram.len() >= min => out[*position] += 1.0,
                        Some(_) => {}
                    }
                }
            }
            if min == 1 {
                min = 2;
            }
            if self.max_gram == 1 || min > self.max_gram {
                break;
            }
        }
        for (position, value) in out.iter_mut().enumerate() {
            let weight = self.weights.get(position).copied().unwrap_or(1.0);
            *value = match self.weighting {
                Weighting::Tf => *value,
                Weighting::Idf if *value > 0.0 => weight,
                Weighting::Idf => 0.0,
                Weighting::TfIdf => *value * weight,
            };
        }
    }
}

impl Kernel for TfIdfVectorizer {
    fn name(&self) -> &'static str {
        "TfIdfVectorizer"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let shape: TVec<TDim> = match inputs[0].1 {
            [rows, _] => tvec![rows.clone(), self.width.into()],
            _ => tvec![self.width.into()],
        };
        Ok(tvec![(DatumType::F32, shape)])
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let (rows, columns, shape) = match *input.shape() {
            [] => (1, 1, vec![self.width]),
            [columns] => (1, columns, vec![self.width]),
            [rows, columns] => (rows, columns, vec![rows, self.width]),
            ref other => {
                return Err(InputRejected(format!(
                    "TfIdfVectorizer takes [C] or [N, C], not shape {other:?}"
                ))
                .into());
            }
        };
        let items: Vec<Item> = if input.datum_type() == DatumType::String {
            let plain = input.try_as_plain_ram()?;
            plain
                .as_slice::<String>()?
                .iter()
                .cloned()
                .map(Item::Str)
                .collect()
        } else {
            let ints = input.cast_to::<i64>()?;
            let plain = ints.try_as_plain_ram()?;
            plain.as_slice::<i64>()?.iter().map(|i| Item::Int(*i)).collect()
        };
        let mut out = vec![0f32; rows * self.width];
        if columns > 0 {
            for (row, chunk) in items.chunks(columns).enumerate() {
                self.row(chunk, &mut out[row * self.width..(row + 1) * self.width]);
            }
        }
        Ok(tvec![
            tract_ndarray::ArrayD::from_shape_vec(shape, out)?
                .into_tensor()
                .into_tvalue()
        ])
    }
}

//! `StringNormalizer` (ONNX opset 10): drops the strings that are stop words, and changes
//! the case of the rest. Its input is `[C]` or `[1, C]`, and so is its output, with as
//! many strings as survive (one empty string when none does): a length only the data
//! decides. skl2onnx's text pipelines begin with it.
//!
//! As onnxruntime does: a case-insensitive comparison puts both sides in upper case when
//! the action is UPPER and in lower case otherwise; case changes map each character
//! alone (so `ß` stays `ß`, as C++'s `towupper` leaves it), never to several.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::model::ml::attrs::Attrs;
use crate::model::ml::kernel::{self, Kernel};
use crate::model::types::InputRejected;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    None,
    Lower,
    Upper,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StringNormalizer {
    case: Case,
    case_sensitive: bool,
    /// Compared as the case rule says: as given when case-sensitive, else folded.
    stopwords: Vec<String>,
    /// The surviving strings' count, once the graph is typed.
    count: Option<Symbol>,
}

pub(crate) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attrs = Attrs::of(node);
    let case = match attrs.string("case_change_action")?.unwrap_or("NONE") {
        "NONE" => Case::None,
        "LOWER" => Case::Lower,
        "UPPER" => Case::Upper,
        other => {
            return Err(attrs
                .error(
                    "case_change_action",
                    format!("{other:?} is not NONE, LOWER or UPPER"),
                )
                .into());
        }
    };
    let case_sensitive = attrs.int("is_case_sensitive").unwrap_or(0) != 0;
    let fold = if case == Case::Upper {
        Case::Upper
    } else {
        Case::Lower
    };
    let stopwords = attrs
        .strings("stopwords")?
        .into_iter()
        .map(|word| {
            if case_sensitive {
                word.to_owned()
            } else {
                change_case(word, fold)
            }
        })
        .collect();
    kernel::op(StringNormalizer {
        case,
        case_sensitive,
        stopwords,
        count: None,
    })
}

/// Each character mapped alone, where it maps to exactly one.
fn change_case(text: &str, case: Case) -> String {
    fn single(mut chars: impl Iterator<Item = char>, original: char) -> char {
        match (chars.next(), chars.next()) {
            (Some(one), None) => one,
            _ => original,
        }
    }
    match case {
        Case::None => text.to_owned(),
        Case::Lower => text.chars().map(|c| single(c.to_lowercase(), c)).collect(),
        Case::Upper => text.chars().map(|c| single(c.to_uppercase(), c)).collect(),
    }
}

impl Kernel for StringNormalizer {
    fn name(&self) -> &'static str {
        "StringNormalizer"
    }

    fn output_facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let shape = inputs[0].1;
        let length = match &self.count {
            Some(symbol) => symbol.to_dim(),
            None => shape.last().cloned().unwrap_or(TDim::from(1)),
        };
        let mut out: TVec<TDim> = shape.into();
        if let Some(last) = out.last_mut() {
            *last = length;
        }
        Ok(tvec![(DatumType::String, out)])
    }

    fn data_dependent(&self) -> bool {
        true
    }

    fn specialize(&self, _: &[DatumType], symbols: &SymbolScope) -> TractResult<Self> {
        Ok(StringNormalizer {
            count: Some(symbols.new_with_prefix("strings")),
            ..self.clone()
        })
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        match input.shape() {
            [_] | [1, _] => {}
            other => {
                return Err(InputRejected(format!(
                    "StringNormalizer takes [C] or [1, C] strings, not shape {other:?}"
                ))
                .into());
            }
        }
        let plain = input.try_as_plain_ram()?;
        let fold = if self.case == Case::Upper {
            Case::Upper
        } else {
            Case::Lower
        };
        let mut kept: Vec<String> = plain
            .as_slice::<String>()?
            .iter()
            .filter(|text| {
                let compared = if self.case_sensitive {
                    (*text).clone()
                } else {
                    change_case(text, fold)
                };
                !self.stopwords.contains(&compared)
            })
            .map(|text| change_case(text, self.case))
            .collect();
        if kept.is_empty() {
            kept.push(String::new());
        }
        let mut shape = input.shape().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = kept.len();
        }
        Ok(tvec![
            tract_ndarray::ArrayD::from_shape_vec(shape, kept)?
                .into_tensor()
                .into_tvalue()
        ])
    }
}

//! `POST /score`: the tutorial's contract, for every model that has rows.
//!
//! `{"X": row}` or `{"X": [row, …]}` answers `{"score": […]}`, one score per row, and for
//! classifiers each row's class probabilities. A model with one input takes rows of any
//! shape and element type (nested arrays for an image or a sequence, integers for token
//! ids); a model whose inputs are each one value per row (a DataFrame pipeline) takes
//! records, `{"X": [{"age": 31, "city": "paris"}, …]}`, one key per input. Each score is
//! that row of the answering output: a value, or a nested array when a row has several
//! (a softmax's probabilities, an embedding). The identity model echoes `X` as sent.
//!
//! What `/score` makes of a model is decided once, when it loads ([`Contract::of`]); a
//! model it cannot take is still served over `/v2`, and says so at start-up.

use std::fmt;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::api::{NotFinite, Scorer};
use crate::features::{Records, ScoreBody};
use crate::http::{self, ApiError, HttpResponse, json};
use crate::model::{Array, Dim, ElementType, Model, TensorSpec};
use crate::tensors::{self, Kind, Nulls, Place};

/// How `/score` serves the loaded model.
#[derive(Debug, Clone, PartialEq)]
pub enum Contract {
    /// The identity model: `X` comes back as sent.
    Echo,
    /// Rows in, a score per row out.
    Rows {
        /// For a model with one input: each row an array of its shape after the first axis.
        tensor: Option<TensorRows>,
        /// For a model whose inputs each take one value per row: each row a record.
        records: Option<Vec<Column>>,
        /// The output whose rows are the scores.
        score: usize,
        /// For classifiers, the output of each row's class probabilities.
        probabilities: Option<usize>,
    },
    /// `/score` cannot take this model; `/v2` serves it. Says why.
    Refused(String),
}

/// The rows of a model's one input.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRows {
    pub element: ElementType,
    pub rank: usize,
    /// The input's first dimension: the rows, open or fixed.
    pub first: Dim,
    /// The shape of one row: the input's after its first axis.
    pub row_shape: Vec<Dim>,
}

/// An input that takes one value per row, `[N]` or `[N, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub element: ElementType,
    /// 1 for `[N]`, 2 for `[N, 1]`.
    pub rank: usize,
}

impl Contract {
    /// Decides, from what the model declares, how `/score` serves it.
    pub fn of(model: &dyn Model) -> Contract {
        if model.echoes() {
            return Contract::Echo;
        }
        match Self::rows(model) {
            Ok(contract) => contract,
            Err(why) => Contract::Refused(why),
        }
    }

    fn rows(model: &dyn Model) -> Result<Contract, String> {
        let inputs = model.inputs();
        let outputs = model.outputs();
        let records: Option<Vec<Column>> = inputs.iter().map(column).collect();
        let tensor = match inputs {
            [] => return Err("the model takes no inputs, so there are no rows to score".into()),
            [single] => {
                let Some((_, row_shape)) = single.shape.split_first() else {
                    return Err(format!(
                        "its input {:?} is a scalar, with no rows; /score takes rows",
                        single.name
                    ));
                };
                Some(TensorRows {
                    element: single.element,
                    rank: single.shape.len(),
                    first: single.shape[0],
                    row_shape: row_shape.to_vec(),
                })
            }
            several => {
                if let Some(spec) = several.iter().find(|spec| column(spec).is_none()) {
                    return Err(format!(
                        "it has {} inputs and {:?} (shape {:?}) holds more than one value per row; /score takes several inputs only as records of one value each",
                        several.len(),
                        spec.name,
                        spec.protocol_shape()
                    ));
                }
                None
            }
        };
        let answering = &outputs[0];
        if !answering.batched {
            return Err(format!(
                "its first output {:?} (shape {:?}) has no row per input row",
                answering.name,
                answering.protocol_shape()
            ));
        }
        Ok(Contract::Rows {
            tensor,
            records,
            score: 0,
            probabilities: classifier_probabilities(outputs),
        })
    }
}

/// The spec as a column of one value per row, if it is one.
fn column(spec: &TensorSpec) -> Option<Column> {
    let rank = match spec.shape.as_slice() {
        [_] => 1,
        [_, Dim::Fixed(1)] => 2,
        _ => return None,
    };
    Some(Column {
        name: spec.name.clone(),
        element: spec.element,
        rank,
    })
}

/// A classifier answers its labels first (one integer or string per row), then each row's
/// probabilities (`[N, classes]` floats), whatever nodes compute them: skl2onnx's
/// classifiers, its nearest neighbours (ArgMax and friends), XGBoost's, CatBoost's.
fn classifier_probabilities(outputs: &[TensorSpec]) -> Option<usize> {
    let [labels, probabilities, ..] = outputs else {
        return None;
    };
    let one_per_row = matches!(labels.shape.as_slice(), [_] | [_, Dim::Fixed(1)]);
    let label_type = labels.element.is_integer() || labels.element == ElementType::Str;
    let classes = matches!(
        probabilities.shape.as_slice(),
        [_, Dim::Dynamic] | [_, Dim::Fixed(2..)]
    );
    // Named so by skl2onnx, onnxmltools and CatBoost; KMeans' distances are "scores".
    let named = probabilities.name.to_ascii_lowercase().contains("prob");
    (one_per_row
        && label_type
        && probabilities.element.is_float()
        && classes
        && named
        && probabilities.batched)
        .then_some(1)
}

/// Why rows or records do not fit the model's input.
#[derive(Debug)]
pub enum RowError {
    Depth {
        depth: usize,
        row_shape: Vec<i64>,
    },
    RowShape {
        shape: Vec<usize>,
        row_shape: Vec<i64>,
        model: String,
    },
    NotRows {
        found: Kind,
    },
    NotRecords,
    OnlyRecords {
        fields: String,
    },
    MissingField {
        record: usize,
        field: String,
    },
    UnknownField {
        record: usize,
        field: String,
        fields: String,
    },
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowError::Depth { depth, row_shape } => write!(
                f,
                "X is nested {depth} deep; the model takes rows of shape {row_shape:?} (X a row, or a list of rows)"
            ),
            RowError::RowShape {
                shape,
                row_shape,
                model,
            } => write!(
                f,
                "X holds rows of shape {shape:?}, but model {model:?} takes rows of shape {row_shape:?}"
            ),
            RowError::NotRows { found } => write!(f, "X is {found}, expected a row or a list of rows"),
            RowError::NotRecords => write!(
                f,
                "X holds records, but this model takes rows of one input; send X as a row or a list of rows"
            ),
            RowError::OnlyRecords { fields } => write!(
                f,
                "this model takes records: send X as {{\"{fields}\": …}} objects, one per row, with a key per input"
            ),
            RowError::MissingField { record, field } => {
                write!(f, "X[{record}] has no {field:?}: every record names every input")
            }
            RowError::UnknownField {
                record,
                field,
                fields,
            } => write!(
                f,
                "X[{record}] has {field:?}, which is not an input of the model (it takes {fields})"
            ),
        }
    }
}

impl std::error::Error for RowError {}

/// The score of each row, and the probabilities beside them.
pub async fn score(scorer: &Arc<Scorer>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    http::check_json_content_type(request.headers())?;
    let body = http::read_json_body(request, &scorer.limits).await?;
    let parsed = ScoreBody::parse(&body).map_err(ApiError::bad_request)?;
    let (tensor, records, score, probabilities) = match &scorer.score {
        Contract::Echo => return echo(scorer, &parsed, body.len()),
        Contract::Refused(why) => {
            return Err(ApiError::NotForScore {
                model: scorer.model.name().to_owned(),
                why: why.clone(),
            });
        }
        Contract::Rows {
            tensor,
            records,
            score,
            probabilities,
        } => (tensor, records, *score, *probabilities),
    };
    let x = parsed.x();
    let sent_records = match Kind::of_text(x) {
        Kind::Object => true,
        Kind::Array => first_element_kind(x) == Kind::Object,
        _ => false,
    };
    let inputs = match (tensor, records) {
        (_, Some(columns)) if sent_records => read_records(scorer, &parsed, columns)?,
        (Some(_), None) if sent_records => return Err(ApiError::bad_request(RowError::NotRecords)),
        (Some(tensor), _) => vec![rows(scorer, &parsed, tensor)?],
        (None, Some(columns)) if first_element_kind(x) != Kind::Array => {
            read_records(scorer, &parsed, columns)?
        }
        (None, Some(columns)) => {
            let fields: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            return Err(ApiError::bad_request(RowError::OnlyRecords {
                fields: fields.join("\": …, \""),
            }));
        }
        (None, None) => return Err(ApiError::NoSuchPath),
    };
    let rows = inputs[0].shape.first().copied().unwrap_or(1);
    let outputs = scorer.predict(inputs).await?;
    let mut out = Vec::with_capacity(64 + rows * 16);
    out.extend_from_slice(br#"{"score":"#);
    write_rows(scorer, &mut out, &outputs, score, rows)?;
    if let Some(index) = probabilities {
        out.extend_from_slice(br#","probabilities":"#);
        write_rows(scorer, &mut out, &outputs, index, rows)?;
    }
    out.push(b'}');
    Ok(json(StatusCode::OK, out))
}

/// The identity model: `X` as sent, once it is known to be rows of finite numbers.
fn echo(scorer: &Scorer, parsed: &ScoreBody<'_>, size: usize) -> Result<HttpResponse, ApiError> {
    not_rows(parsed.x())?;
    let shape = tensors::shape_of_numbers(parsed.x(), 2, "X").map_err(ApiError::bad_request)?;
    if shape.is_empty() {
        return Err(ApiError::bad_request(RowError::Depth {
            depth: 0,
            row_shape: vec![-1],
        }));
    }
    let rows = if shape.len() == 2 { shape[0] } else { 1 };
    scorer.check_rows(rows, "X")?;
    let mut out = Vec::with_capacity(size + 12);
    out.extend_from_slice(br#"{"score":"#);
    parsed.write_compact(&mut out);
    out.push(b'}');
    Ok(json(StatusCode::OK, out))
}

/// `X` as the model's one input: a batch of rows, or one row.
fn rows(scorer: &Scorer, parsed: &ScoreBody<'_>, tensor: &TensorRows) -> Result<Array, ApiError> {
    let TensorRows {
        element,
        rank,
        row_shape,
        ..
    } = tensor;
    let (element, rank) = (*element, *rank);
    let x = parsed.x();
    if rank > 1 {
        not_rows(x)?;
    }
    let mut array = tensors::read(x, element, rank, "X", Nulls::Missing).map_err(ApiError::bad_request)?;
    let protocol_shape = || row_shape.iter().map(|d| d.protocol()).collect::<Vec<_>>();
    // Nested as deep as the input: a batch. One less: a lone row.
    if array.shape.len() + 1 == rank {
        array.shape.insert(0, 1);
    } else if array.shape.len() != rank {
        return Err(ApiError::bad_request(RowError::Depth {
            depth: array.shape.len(),
            row_shape: protocol_shape(),
        }));
    }
    let fits = array.shape[1..]
        .iter()
        .zip(row_shape)
        .all(|(size, dim)| dim.admits(*size));
    if !fits {
        return Err(ApiError::bad_request(RowError::RowShape {
            shape: array.shape[1..].to_vec(),
            row_shape: protocol_shape(),
            model: scorer.model.name().to_owned(),
        }));
    }
    scorer.check_rows(array.shape[0], "X")?;
    scorer.check_shape(&array.shape, 0, "X")?;
    Ok(array)
}

/// Refuses an `X` that is not an array, where rows are arrays.
fn not_rows(x: &str) -> Result<(), ApiError> {
    match Kind::of_text(x) {
        Kind::Array => Ok(()),
        found => Err(ApiError::bad_request(RowError::NotRows { found })),
    }
}

/// The kind of the first element inside the array `raw`.
fn first_element_kind(raw: &str) -> Kind {
    let inner = raw.trim_start().strip_prefix('[').unwrap_or("");
    Kind::of_text(inner)
}

/// `X` as records: one array per input, a value per record.
fn read_records(scorer: &Scorer, parsed: &ScoreBody<'_>, columns: &[Column]) -> Result<Vec<Array>, ApiError> {
    let Records { records, .. } = parsed.records().map_err(ApiError::bad_request)?;
    scorer.check_rows(records.len(), "X")?;
    for (index, record) in records.iter().enumerate() {
        if let Some((unknown, _)) = record
            .fields
            .iter()
            .find(|(key, _)| !columns.iter().any(|c| c.name == *key))
        {
            let fields: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            return Err(ApiError::bad_request(RowError::UnknownField {
                record: index,
                field: unknown.to_string(),
                fields: fields.join(", "),
            }));
        }
    }
    let mut inputs = Vec::with_capacity(columns.len());
    for (position, column) in columns.iter().enumerate() {
        let mut fields = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let raw = record.get(&column.name).ok_or_else(|| {
                ApiError::bad_request(RowError::MissingField {
                    record: index,
                    field: column.name.clone(),
                })
            })?;
            fields.push(raw.get());
        }
        let shape = match column.rank {
            1 => vec![records.len()],
            _ => vec![records.len(), 1],
        };
        let place = |index: usize| Place {
            root: format!("X[{index}].{}", column.name),
            path: Vec::new(),
        };
        let data =
            tensors::read_fields(fields.into_iter(), column.element, place).map_err(ApiError::bad_request)?;
        scorer.check_shape(&shape, position, &format!("input {:?}", column.name))?;
        inputs.push(Array { shape, data });
    }
    Ok(inputs)
}

/// Rows `0..rows` of an output, one score each: a value, or an array when a row has
/// several.
fn write_rows(
    scorer: &Scorer,
    out: &mut Vec<u8>,
    outputs: &[Array],
    index: usize,
    rows: usize,
) -> Result<(), ApiError> {
    let output = &outputs[index];
    let output_name = &scorer.model.outputs()[index].name;
    let failed = |problem: String| ApiError::ModelFailed {
        model: scorer.model.name().to_owned(),
        error: crate::model::PredictError::Output {
            name: output_name.clone(),
            problem,
        },
    };
    if output.shape.first() != Some(&rows) {
        return Err(failed(format!(
            "it has shape {:?} for {rows} rows: not a value per row",
            output.shape
        )));
    }
    let per_row = output.per_row();
    // A score is bare where the model declares one value per row; else nested, whatever
    // this request's rows hold (an open dimension that is 1 today stays an array).
    let declared = &scorer.model.outputs()[index].shape;
    let bare = declared.iter().skip(1).all(|dim| *dim == Dim::Fixed(1));
    if bare && per_row != 1 {
        return Err(failed(format!(
            "it declares one value per row, but answered shape {:?}",
            output.shape
        )));
    }
    let row_shape: &[usize] = if bare { &[] } else { &output.shape[1..] };
    out.push(b'[');
    for row in 0..rows {
        if row > 0 {
            out.push(b',');
        }
        let range = row * per_row..(row + 1) * per_row;
        tensors::write_nested(out, &output.data, range, row_shape).map_err(|_| {
            ApiError::bad_request(NotFinite {
                output: output_name.to_owned(),
                row,
            })
        })?;
    }
    out.push(b']');
    Ok(())
}

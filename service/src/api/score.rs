//! `POST /score`: the tutorial's contract. `{"X": row}` or `{"X": [row, …]}` answers
//! `{"score": […]}` with one value or label per row, and for classifiers each row's
//! class probabilities. The identity model echoes `X` as sent.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::api::Scorer;
use crate::features::Features;
use crate::http::{self, ApiError, HttpResponse, json};
use crate::model::Data;

#[derive(serde::Serialize)]
struct ScoreAnswer<'a> {
    score: &'a Data,
    #[serde(skip_serializing_if = "Option::is_none")]
    probabilities: Option<&'a [Data]>,
}

pub async fn score(scorer: &Arc<Scorer>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    http::check_json_content_type(request.headers())?;
    let body = http::read_json_body(request, &scorer.limits).await?;
    let features = Features::from_body(&body).map_err(ApiError::bad_request)?;
    scorer.check_batch(features.rows(), features.width(), "X")?;
    if scorer.model.echoes() {
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(br#"{"score":"#);
        features.write_compact(&mut out);
        out.push(b'}');
        return Ok(json(StatusCode::OK, out));
    }
    let (rows, width) = (features.rows(), features.width());
    let output = scorer.predict(rows, width, features.into_values()).await?;
    // A list of scores, one per row, whether `X` was one row or a batch: clients index
    // the answer the same way in both cases.
    let body = serde_json::to_vec(&ScoreAnswer {
        score: &output.score,
        probabilities: output.probabilities.as_deref(),
    })
    .map_err(|err| ApiError::ModelFailed {
        model: scorer.model.name().to_owned(),
        error: crate::model::PredictError::Output {
            name: "score".into(),
            problem: err.to_string(),
        },
    })?;
    Ok(json(StatusCode::OK, body))
}

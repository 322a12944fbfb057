//! Models: loaded once at start-up, shared by every request.

use crate::features::Features;

/// What a model answers for a batch of rows.
#[derive(Debug, PartialEq)]
pub enum Prediction {
    /// The input itself, exactly as sent: the tutorial's identity contract.
    Echo,
}

/// A model failed on input that passed validation: the server's fault, not the client's.
#[derive(Debug)]
pub struct PredictError(pub String);

/// A loaded model. Implementations are immutable after loading, so one instance serves
/// every request concurrently.
pub trait Model: Send + Sync + 'static {
    /// The name reported in logs and metrics.
    fn name(&self) -> &str;

    /// How many features each row must have, when the model knows.
    fn input_width(&self) -> Option<usize>;

    /// Scores every row of `features`.
    fn predict(&self, features: &Features<'_>) -> Result<Prediction, PredictError>;
}

/// The tutorial's model: the score is the input.
pub struct Identity;

impl Model for Identity {
    fn name(&self) -> &str {
        "identity"
    }

    fn input_width(&self) -> Option<usize> {
        None
    }

    fn predict(&self, _features: &Features<'_>) -> Result<Prediction, PredictError> {
        Ok(Prediction::Echo)
    }
}

/// Loads the model named on the command line.
pub fn load(spec: &str) -> anyhow::Result<Box<dyn Model>> {
    match spec {
        "identity" => Ok(Box::new(Identity)),
        other => anyhow::bail!(
            "cannot load model {other:?}: the only built-in model is \"identity\", and this build does not load model files"
        ),
    }
}

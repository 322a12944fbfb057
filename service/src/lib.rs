//! The score service: `POST /score` answers `{"X": features}` with `{"score": …}`.
//!
//! [`run`] serves a bound listener until a shutdown future resolves, then drains; the
//! binary only reads its configuration and calls it, so tests drive the real server on an
//! ephemeral port.

pub mod config;
pub mod features;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod model;
pub mod tensors;

mod api;
mod app;
mod batching;
mod compute;
mod metrics;
pub mod repository;
mod server;

pub use app::App;
pub use http::Port;
pub use server::{run, run_with_operator_port};

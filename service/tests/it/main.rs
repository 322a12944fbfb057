//! Integration tests: the real server on an ephemeral loopback port, driven over real
//! sockets with hand-written HTTP so every byte the client sends is under the test's control.

mod bad_input;
mod check;
mod compute;
mod connections;
mod drain;
mod metrics;
mod model_limits;
mod models;
mod oip_client;
mod openapi;
mod repository;
mod schemathesis;
mod score;
mod support;
mod tensor_requests;
mod zoo;

//! The real kubectl (`/usr/bin/kubectl`, gcloud's dispatcher with its built-in v1.32)
//! against fake clusters. `api` needs no Docker (containers are simulated); `docker` runs
//! a real image from a real registry and is ignored unless asked for, as the project runs
//! tests that need tools.

mod api;
mod docker;
mod support;

//! The top layer: one clap command per module, each exporting only its `*Cmd`. A task
//! parses its flags, chooses a target or composes steps into a plan, and executes it. A
//! new task is a module here and a line in `main.rs`.

pub(crate) mod advisories;
pub(crate) mod bench;
pub(crate) mod canary;
pub(crate) mod ci;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod deploy;
pub(crate) mod down;
pub(crate) mod fixtures;
pub(crate) mod fuzz;
pub(crate) mod image;
pub(crate) mod kustomize;
pub(crate) mod logs;
pub(crate) mod push;
pub(crate) mod registry;
pub(crate) mod render;
pub(crate) mod ship;
pub(crate) mod smoke;
pub(crate) mod status;
pub(crate) mod tools;

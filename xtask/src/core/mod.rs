//! The lowest layer: what every task stands on. Plans and their execution, processes and
//! the one wait loop, the HTTP client, paths and state records, git, the deployment
//! settings, the target's name, and finding or installing tools. Nothing here imports
//! from `steps`, `targets` or `tasks`.

pub(crate) mod git;
pub(crate) mod http;
pub(crate) mod model_file;
pub(crate) mod paths;
pub(crate) mod plan;
pub(crate) mod process;
pub(crate) mod records;
pub(crate) mod settings;
pub(crate) mod target;
pub(crate) mod tools;

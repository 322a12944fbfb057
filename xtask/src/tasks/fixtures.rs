//! `cargo xtask fixtures`: regenerate the test models (models/*.onnx and the zoo in
//! models/zoo/, with onnxruntime's answers), or print the README's table of served
//! models (`--survey`).

use clap::Args;
use xshell::{Shell, cmd};

use crate::core::paths::cargo;
use crate::core::plan::Plan;
use crate::core::tools::ensure_python_tools;

#[derive(Args, Debug)]
pub(crate) struct FixturesCmd {
    /// Serve every model of the zoo (and the ONNX package's own cases) and print which
    /// ones answer like onnxruntime, and through which routes (the README's tables),
    /// instead of regenerating them.
    #[arg(long)]
    survey: bool,
}

impl FixturesCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let mut plan: Plan = Plan::new();
        if self.survey {
            let cargo = cargo(sh);
            for dir in ["models/zoo", "models/zoo/onnx-node"] {
                plan.run(
                    cmd!(
                        sh,
                        "{cargo} run --quiet --release --package score-service --example survey -- {dir}"
                    ),
                    "the survey could not run; read the error above",
                );
            }
        } else {
            let python = ensure_python_tools(sh, &mut plan, "models/requirements.txt").join("python");
            plan.run(
                cmd!(sh, "{python} models/make_fixtures.py"),
                "read the Python error above",
            );
        }
        plan.execute(dry_run)
    }
}

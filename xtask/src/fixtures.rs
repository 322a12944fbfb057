//! `cargo xtask fixtures`: regenerate the test models in models/ (scikit-learn → ONNX,
//! with onnxruntime's answers), or survey which estimators tract serves.

use clap::Args;
use xshell::{Shell, cmd};

use crate::plan::Plan;
use crate::tools::ensure_python_tools;

#[derive(Args, Debug)]
pub(crate) struct FixturesCmd {
    /// Export many common estimators to target/models-survey and print which ones the
    /// service answers like onnxruntime (the README's table).
    #[arg(long)]
    survey: bool,
}

impl FixturesCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let mut plan = Plan::new();
        let python = ensure_python_tools(sh, &mut plan, "models/requirements.txt").join("python");
        let next = "read the Python error above";
        if self.survey {
            let dir = "target/models-survey";
            plan.run(cmd!(sh, "{python} models/make_fixtures.py --survey {dir}"), next)
                .run(
                    cmd!(
                        sh,
                        "cargo run --quiet --package score-service --example survey -- {dir}"
                    ),
                    "the survey could not run; read the error above",
                );
        } else {
            plan.run(cmd!(sh, "{python} models/make_fixtures.py"), next);
        }
        plan.execute(dry_run)
    }
}

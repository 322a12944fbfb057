//! kubectl, always told which cluster: every command names the kubeconfig context the
//! settings chose, so nothing depends on whichever cluster kubectl's current context
//! happens to point at (production, say), and the namespace where one applies.

use std::ffi::OsStr;

use anyhow::bail;
use xshell::{Cmd, Shell, cmd};

use crate::core::plan::{Plan, Probe};

#[derive(Clone)]
pub(crate) struct Kubectl<'a> {
    sh: &'a Shell,
    pub(crate) context: String,
    pub(crate) namespace: String,
}

impl<'a> Kubectl<'a> {
    pub(crate) fn new(sh: &'a Shell, context: String, namespace: String) -> Self {
        Kubectl {
            sh,
            context,
            namespace,
        }
    }

    /// `kubectl ARGS --context C --namespace N`.
    pub(crate) fn namespaced<I>(&self, args: I) -> Cmd<'a>
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        let (context, namespace) = (&self.context, &self.namespace);
        cmd!(self.sh, "kubectl")
            .args(args)
            .args(["--context", context, "--namespace", namespace])
    }

    /// `kubectl ARGS --context C`, for what names its namespaces itself (a manifest) or
    /// is one (`delete namespace`).
    pub(crate) fn cluster_wide<I>(&self, args: I) -> Cmd<'a>
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        let context = &self.context;
        cmd!(self.sh, "kubectl").args(args).args(["--context", context])
    }

    /// Asks the kubeconfig for the context ([`has_context`] reads the answer). `--context`
    /// here too: gcloud's kubectl dispatcher asks the server of the context it is given —
    /// else the current one — for its version, even for `config`.
    pub(crate) fn context_probe(&self) -> Cmd<'a> {
        let context = &self.context;
        cmd!(
            self.sh,
            "kubectl config get-contexts {context} --output name --context {context}"
        )
    }

    /// Adds the check that the kubeconfig has the context, so a missing one stops the
    /// plan before anything changes, with what to do (`missing` says how to get it).
    pub(crate) fn add_context_check<C>(&self, plan: &mut Plan<'a, C>, missing: String) {
        let context = self.context.clone();
        plan.probe(self.context_probe(), move |_, probe: Probe| {
            if has_context(&probe, &context) {
                return Ok(());
            }
            bail!(
                "your kubeconfig has no context {context:?} ({}): {missing}",
                probe.stderr.trim()
            )
        });
    }
}

/// Whether the answer to [`Kubectl::context_probe`] found `context`.
pub(crate) fn has_context(probe: &Probe, context: &str) -> bool {
    probe.success && probe.stdout.trim() == context
}

/// The current context of the kubeconfig (a read, so it runs for `--dry-run` too).
pub(crate) fn current_context(sh: &Shell) -> anyhow::Result<String> {
    let probe = cmd!(sh, "kubectl config current-context").ignore_status();
    eprintln!("$ {probe}");
    let output = probe.quiet().output()?;
    let context = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || context.is_empty() {
        bail!(
            "kubectl has no current context ({}): pass --context NAME (`kubectl config get-contexts` lists them), or `kubectl config use-context NAME`",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(context)
}

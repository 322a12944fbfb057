//! Google Cloud IAM, as far as the caller can see it: whether the account gcloud acts as,
//! and the nodes' service account, hold the roles `cluster-up` and `ship` need. Read from
//! the IAM policies gcloud shows (the project's, the repository's, the node service
//! account's); a grant through a group, or one with a condition, cannot be judged from
//! here, and is reported as such rather than as held or missing.

use serde_json::Value;
use xshell::{Shell, cmd};

use crate::core::plan::{Plan, query};
use crate::core::settings::Gke;

/// Who needs a role: the caller (a person, or a pipeline's service account), or the
/// nodes, which run as the project's Compute Engine default service account (cluster-up
/// names no other).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    Caller,
    Nodes,
}

/// Where a grant may sit besides the project.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Below {
    Nothing,
    Repository,
    NodeServiceAccount,
}

struct Need {
    holder: Holder,
    why: &'static str,
    /// The roles that carry the permission; the first is the one to grant.
    roles: &'static [&'static str],
    below: Below,
}

/// The Artifact Registry roles that may read a repository, from the least; all but the
/// first may also write to it.
const READ_ARTIFACTS: [&str; 6] = [
    "roles/artifactregistry.reader",
    "roles/artifactregistry.writer",
    "roles/artifactregistry.repoAdmin",
    "roles/artifactregistry.admin",
    "roles/editor",
    "roles/owner",
];
const WRITE_ARTIFACTS: &[&str] = READ_ARTIFACTS.split_first().unwrap().1;

/// Basic roles carry everything below; listed with each need so a project run on them
/// is not reported as missing anything.
const NEEDS: [Need; 8] = [
    Need {
        holder: Holder::Caller,
        why: "cluster-up: enable the Kubernetes Engine and Artifact Registry APIs",
        roles: &[
            "roles/serviceusage.serviceUsageAdmin",
            "roles/editor",
            "roles/owner",
        ],
        below: Below::Nothing,
    },
    Need {
        holder: Holder::Caller,
        why: "cluster-up: create the cluster",
        roles: &[
            "roles/container.admin",
            "roles/container.clusterAdmin",
            "roles/editor",
            "roles/owner",
        ],
        below: Below::Nothing,
    },
    Need {
        holder: Holder::Caller,
        why: "cluster-up: create nodes that run as the nodes' service account",
        roles: &["roles/iam.serviceAccountUser", "roles/editor", "roles/owner"],
        below: Below::NodeServiceAccount,
    },
    Need {
        holder: Holder::Caller,
        why: "cluster-up: create the Artifact Registry repository",
        roles: &["roles/artifactregistry.admin", "roles/editor", "roles/owner"],
        below: Below::Nothing,
    },
    Need {
        holder: Holder::Caller,
        why: "ship: push the image",
        roles: WRITE_ARTIFACTS,
        below: Below::Repository,
    },
    Need {
        holder: Holder::Caller,
        why: "ship: deploy to the cluster and read its rollout, pods and logs",
        roles: &[
            "roles/container.developer",
            "roles/container.admin",
            "roles/editor",
            "roles/owner",
        ],
        below: Below::Nothing,
    },
    Need {
        holder: Holder::Nodes,
        why: "the nodes: pull the image",
        roles: &READ_ARTIFACTS,
        below: Below::Repository,
    },
    Need {
        holder: Holder::Nodes,
        why: "the nodes: write their logs and metrics",
        roles: &[
            "roles/container.defaultNodeServiceAccount",
            "roles/editor",
            "roles/owner",
        ],
        below: Below::Nothing,
    },
];

/// What a policy says of one need for one member.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Held(String),
    /// Granted to a member that may include this one (a group, a domain), or only under
    /// a condition: IAM decides, we cannot.
    Perhaps(String),
    Missing,
}

/// The bindings of the policies that apply to one need: (role, members, conditional).
type Bindings<'p> = Vec<(&'p str, Vec<&'p str>, bool)>;

fn bindings(policy: &Value) -> Bindings<'_> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|binding| {
            let members = binding["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            (
                binding["role"].as_str().unwrap_or_default(),
                members,
                !binding["condition"].is_null(),
            )
        })
        .collect()
}

fn judge(bindings: &Bindings<'_>, roles: &[&str], member: &str) -> Verdict {
    let granting = || bindings.iter().filter(|(role, _, _)| roles.contains(role));
    if let Some((role, _, _)) =
        granting().find(|(_, members, conditional)| !conditional && members.contains(&member))
    {
        return Verdict::Held((*role).to_owned());
    }
    let perhaps = granting().find_map(|(role, members, conditional)| {
        if *conditional && members.contains(&member) {
            return Some(format!("{role} under a condition"));
        }
        let wide = members.iter().find(|m| {
            ["group:", "domain:", "principalSet:"]
                .iter()
                .any(|kind| m.starts_with(kind))
                || **m == "allAuthenticatedUsers"
        })?;
        Some(format!("{role} through {wide}"))
    });
    perhaps.map_or(Verdict::Missing, Verdict::Perhaps)
}

/// An IAM member for an account's email: service accounts are `serviceAccount:`.
fn member(email: &str) -> String {
    if email.ends_with(".gserviceaccount.com") {
        format!("serviceAccount:{email}")
    } else {
        format!("user:{email}")
    }
}

/// The account gcloud acts as: the service account a credential file impersonates (CI's
/// Workload Identity Federation), else gcloud's configured account. None with only an
/// access token, which names no one.
fn caller(sh: &Shell) -> Option<String> {
    if let Ok(file) = sh.var("CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE") {
        let text = std::fs::read_to_string(file).ok()?;
        let credentials: Value = serde_json::from_str(&text).ok()?;
        let url = credentials["service_account_impersonation_url"].as_str()?;
        let (_, rest) = url.split_once("/serviceAccounts/")?;
        return rest.split(':').next().map(str::to_owned);
    }
    let account = query(cmd!(sh, "gcloud config get account").ignore_stderr()).ok()?;
    let account = account.trim();
    (!account.is_empty()).then(|| account.to_owned())
}

/// A policy gcloud prints as JSON, or None when it cannot be read (no such resource yet,
/// or no permission to read it).
fn policy(cmd: xshell::Cmd<'_>) -> Option<Value> {
    let text = query(cmd).ok()?;
    serde_json::from_str(&text).ok()
}

/// Plans the check: find the caller, read the policies, and print a line per need; a
/// need no policy grants is missing, one that may be granted elsewhere is said to be.
pub(crate) fn add_iam_checks<'a>(sh: &'a Shell, plan: &mut Plan<'a, Vec<String>>, gke: &Gke) {
    let (project, region, repository) = (gke.project.clone(), gke.region(), gke.repository.clone());
    plan.check(
        format!(
            "read the IAM policies of project {project}, of repository {repository} and of the nodes' service account, and judge the roles cluster-up and ship need"
        ),
        move |missing| {
            let Some(email) = caller(sh) else {
                println!(
                    "{:40} NOT CHECKED: gcloud acts on an access token that names no account; set CLOUDSDK_CORE_ACCOUNT to your account's email to check its roles",
                    "IAM roles"
                );
                return Ok(());
            };
            let Some(project_policy) =
                policy(cmd!(sh, "gcloud projects get-iam-policy {project} --format json"))
            else {
                println!(
                    "{:40} NOT CHECKED: {email} may not read project {project}'s IAM policy (above); README's IAM section lists the roles to ask for",
                    "IAM roles"
                );
                return Ok(());
            };
            let number = query(cmd!(sh, "gcloud projects describe {project} --format value(projectNumber)"))?;
            let nodes_account = format!("{}-compute@developer.gserviceaccount.com", number.trim());
            // Absent before cluster-up creates it: then only the project's grants count.
            let repository_policy = policy(
                cmd!(sh, "gcloud artifacts repositories get-iam-policy {repository} --location {region} --project {project} --format json"),
            );
            let account_policy = policy(
                cmd!(sh, "gcloud iam service-accounts get-iam-policy {nodes_account} --project {project} --format json"),
            );
            let (caller_member, nodes_member) = (member(&email), member(&nodes_account));
            for need in &NEEDS {
                let mut applying = bindings(&project_policy);
                let below = match need.below {
                    Below::Repository => repository_policy.as_ref(),
                    Below::NodeServiceAccount => account_policy.as_ref(),
                    Below::Nothing => None,
                };
                applying.extend(below.map(bindings).unwrap_or_default());
                let (who, member) = match need.holder {
                    Holder::Caller => (email.as_str(), &caller_member),
                    Holder::Nodes => (nodes_account.as_str(), &nodes_member),
                };
                let shown = need.why;
                match judge(&applying, need.roles, member) {
                    Verdict::Held(role) => println!("{shown:72} yes ({role})"),
                    Verdict::Perhaps(how) => println!("{shown:72} PERHAPS: {how}; IAM alone can tell"),
                    Verdict::Missing => {
                        let grant = need.roles[0];
                        println!(
                            "{shown:72} MISSING: grant {member} {grant} (`gcloud projects add-iam-policy-binding {project} --member {member} --role {grant}`)"
                        );
                        missing.push(format!("{grant} for {who}"));
                    }
                }
            }
            Ok(())
        },
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_grant_is_held_directly_perhaps_through_a_group_or_a_condition_or_missing() {
        let policy = json!({"bindings": [
            {"role": "roles/container.admin", "members": ["user:ana@example.com"]},
            {"role": "roles/artifactregistry.writer", "members": ["group:deployers@example.com"]},
            {"role": "roles/iam.serviceAccountUser", "members": ["user:ana@example.com"],
             "condition": {"title": "weekdays", "expression": "true"}},
        ]});
        let bindings = bindings(&policy);
        let ana = "user:ana@example.com";
        assert_eq!(
            judge(
                &bindings,
                &["roles/container.developer", "roles/container.admin"],
                ana
            ),
            Verdict::Held("roles/container.admin".into())
        );
        assert_eq!(
            judge(&bindings, &["roles/artifactregistry.writer"], ana),
            Verdict::Perhaps("roles/artifactregistry.writer through group:deployers@example.com".into())
        );
        assert_eq!(
            judge(&bindings, &["roles/iam.serviceAccountUser"], ana),
            Verdict::Perhaps("roles/iam.serviceAccountUser under a condition".into())
        );
        assert_eq!(
            judge(&bindings, &["roles/serviceusage.serviceUsageAdmin"], ana),
            Verdict::Missing
        );
        assert_eq!(
            judge(&bindings, &["roles/container.admin"], "user:bo@example.com"),
            Verdict::Missing
        );
        assert_eq!(
            member("ci@p.iam.gserviceaccount.com"),
            "serviceAccount:ci@p.iam.gserviceaccount.com"
        );
    }

    #[test]
    fn the_caller_of_a_federated_credential_is_the_account_it_impersonates() {
        let file = std::env::temp_dir().join(format!("xtask-iam-creds-{}.json", std::process::id()));
        std::fs::write(
            &file,
            json!({
                "type": "external_account",
                "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/github/providers/github",
                "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/deploy@p.iam.gserviceaccount.com:generateAccessToken",
            })
            .to_string(),
        )
        .unwrap();
        let sh = Shell::new().unwrap();
        sh.set_var("CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", &file);
        assert_eq!(caller(&sh).as_deref(), Some("deploy@p.iam.gserviceaccount.com"));
    }
}

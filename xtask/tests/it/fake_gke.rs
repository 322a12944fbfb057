//! cluster-up and cluster-down end to end with the real gcloud, pointed at a fake of the
//! Google Cloud APIs it calls (Service Usage, Kubernetes Engine, Artifact Registry, and
//! for `tools`, Resource Manager's and IAM's policies), speaking their REST protocol on
//! loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const PROJECT: &str = "my-proj-1";
const ZONE: &str = "us-west1-b";
const REGION: &str = "us-west1";
const CLUSTER: &str = "k8s-ml-cluster";
const REPOSITORY: &str = "ml-images";
const PROJECT_NUMBER: &str = "123456789012";
/// The account the tests' gcloud says it acts as (its access token names no one).
const DEPLOYER: &str = "deployer@my-proj-1.iam.gserviceaccount.com";

#[derive(Default)]
struct Cloud {
    endpoint: ClusterEndpoint,
    /// Every request, as "METHOD /path".
    requests: Vec<String>,
    clusters: BTreeSet<String>,
    repositories: BTreeSet<String>,
    enabled: BTreeSet<String>,
    /// IAM policies by resource (`projects/P`, a repository's or a service account's
    /// name); a project without one answers 403, as to a caller who may not read it.
    policies: BTreeMap<String, Value>,
}

/// What the fake reports of the clusters it creates: the API server's address and CA.
#[derive(Clone)]
pub(crate) struct ClusterEndpoint {
    /// `HOST[:PORT]`, as GKE's `endpoint` (gcloud writes `https://` before it).
    pub(crate) address: String,
    /// The CA certificate, base64 of the PEM, as GKE's `masterAuth.clusterCaCertificate`.
    pub(crate) ca_base64: String,
}

impl Default for ClusterEndpoint {
    fn default() -> Self {
        ClusterEndpoint {
            // A documentation address: kubectl never reaches it.
            address: "203.0.113.10".into(),
            // A syntactically real PEM; gcloud copies it into the kubeconfig as given.
            ca_base64: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJmYWtlCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
                .into(),
        }
    }
}

pub(crate) struct FakeGoogleCloud {
    addr: SocketAddr,
    cloud: Arc<Mutex<Cloud>>,
}

impl FakeGoogleCloud {
    fn start() -> Self {
        Self::start_with(ClusterEndpoint::default())
    }

    /// A fake whose clusters are served by the API server at `endpoint`.
    pub(crate) fn start_with(endpoint: ClusterEndpoint) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let cloud = Arc::new(Mutex::new(Cloud {
            endpoint,
            ..Cloud::default()
        }));
        let shared = cloud.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let cloud = shared.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let cloud = cloud.clone();
                            async move { Ok::<_, Infallible>(answer(&cloud, addr, request).await) }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    });
                }
            });
        });
        FakeGoogleCloud { addr, cloud }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Sets a resource's IAM policy; a repository's brings the repository into being.
    fn set_policy(&self, resource: &str, policy: Value) {
        let mut cloud = self.cloud.lock().unwrap();
        if let Some((_, repository)) = resource.split_once("/repositories/") {
            cloud.repositories.insert(repository.to_owned());
        }
        cloud.policies.insert(resource.to_owned(), policy);
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        std::mem::take(&mut self.cloud.lock().unwrap().requests)
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

fn not_found(what: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"error": {"code": 404, "message": format!("Not found: {what}."), "status": "NOT_FOUND"}}),
    )
}

/// A Kubernetes Engine operation, finished.
fn gke_operation(addr: SocketAddr, kind: &str, name: &str) -> Value {
    let base = format!("http://{addr}/v1/projects/{PROJECT}/locations/{ZONE}");
    json!({
        "name": format!("operation-{kind}-{name}"),
        "zone": ZONE,
        "operationType": kind,
        "status": "DONE",
        "selfLink": format!("{base}/operations/operation-{kind}-{name}"),
        "targetLink": format!("{base}/clusters/{name}"),
    })
}

fn cluster_json(name: &str, endpoint: &ClusterEndpoint) -> Value {
    let ca = &endpoint.ca_base64;
    json!({
        "name": name,
        "location": ZONE,
        "zone": ZONE,
        "status": "RUNNING",
        "endpoint": endpoint.address,
        "currentMasterVersion": "1.34.1-gke.1000",
        "currentNodeVersion": "1.34.1-gke.1000",
        "currentNodeCount": 3,
        "masterAuth": {"clusterCaCertificate": ca},
        "selfLink": format!("https://container.googleapis.com/v1/projects/{PROJECT}/locations/{ZONE}/clusters/{name}"),
    })
}

fn long_running(name: &str, response: Value) -> Value {
    json!({"name": name, "done": true, "response": response})
}

async fn answer(cloud: &Mutex<Cloud>, addr: SocketAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut cloud = cloud.lock().unwrap();
    cloud.requests.push(format!("{method} {path}"));
    let parts: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match (&method, parts.as_slice()) {
        // Service Usage.
        (&Method::POST, ["projects", _, "services:batchEnable"]) => {
            for id in body["serviceIds"].as_array().into_iter().flatten() {
                let id = id.as_str().unwrap_or_default().to_owned();
                cloud.enabled.insert(id);
            }
            json_response(StatusCode::OK, long_running("operations/batch-enable", json!({})))
        }
        (&Method::GET, ["projects", project, "services", service]) => json_response(
            StatusCode::OK,
            json!({"name": format!("projects/{project}/services/{service}"), "state": "ENABLED"}),
        ),
        // Resource Manager and IAM: a resource's policy, as `getIamPolicy` answers.
        (&Method::GET, ["projects", project]) => json_response(
            StatusCode::OK,
            json!({"projectId": project, "projectNumber": PROJECT_NUMBER, "lifecycleState": "ACTIVE", "name": project}),
        ),
        (&Method::POST | &Method::GET, [.., last]) if last.ends_with(":getIamPolicy") => {
            let mut resource = path
                .trim_start_matches("/v1/")
                .trim_end_matches(":getIamPolicy")
                .to_owned();
            // IAM names a service account under any project as under `-`, as gcloud asks.
            if let ["projects", _, "serviceAccounts", account] = resource.split('/').collect::<Vec<_>>()[..] {
                resource = format!("projects/-/serviceAccounts/{account}");
            }
            let repository = resource
                .split_once("/repositories/")
                .map(|(_, name)| name.to_owned());
            if repository.is_some_and(|name| !cloud.repositories.contains(&name)) {
                return not_found(&resource);
            }
            match cloud.policies.get(&resource) {
                Some(policy) => json_response(StatusCode::OK, policy.clone()),
                None if resource.matches('/').count() == 1 => json_response(
                    StatusCode::FORBIDDEN,
                    json!({"error": {"code": 403, "message": format!("The caller does not have permission"), "status": "PERMISSION_DENIED"}}),
                ),
                None => json_response(StatusCode::OK, json!({"etag": "ACAB"})),
            }
        }
        // Kubernetes Engine.
        (&Method::GET, ["projects", _, "locations", _, "clusters", name]) => {
            if cloud.clusters.contains(*name) {
                json_response(StatusCode::OK, cluster_json(name, &cloud.endpoint))
            } else {
                not_found(&path)
            }
        }
        (&Method::POST, ["projects", _, "locations", _, "clusters"]) => {
            let name = body["cluster"]["name"].as_str().unwrap_or_default().to_owned();
            cloud.clusters.insert(name.clone());
            json_response(StatusCode::OK, gke_operation(addr, "CREATE_CLUSTER", &name))
        }
        (&Method::DELETE, ["projects", _, "locations", _, "clusters", name]) => {
            let name = name.to_string();
            cloud.clusters.remove(&name);
            json_response(StatusCode::OK, gke_operation(addr, "DELETE_CLUSTER", &name))
        }
        (&Method::GET, ["projects", _, "locations", _, "operations", operation]) => {
            // Named operation-KIND-CLUSTER by gke_operation; KIND holds no '-'.
            let (kind, name) = operation
                .trim_start_matches("operation-")
                .split_once('-')
                .unwrap_or_default();
            json_response(StatusCode::OK, gke_operation(addr, kind, name))
        }
        // Artifact Registry.
        (&Method::GET, ["projects", project, "locations", location, "repositories", name]) => {
            if cloud.repositories.contains(*name) {
                json_response(
                    StatusCode::OK,
                    json!({"name": format!("projects/{project}/locations/{location}/repositories/{name}"), "format": "DOCKER"}),
                )
            } else {
                not_found(&path)
            }
        }
        (&Method::POST, ["projects", project, "locations", location, "repositories"]) => {
            let name = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("repositoryId="))
                .unwrap_or_default()
                .to_owned();
            cloud.repositories.insert(name.clone());
            let repository = json!({
                "@type": "type.googleapis.com/google.devtools.artifactregistry.v1.Repository",
                "name": format!("projects/{project}/locations/{location}/repositories/{name}"),
                "format": "DOCKER",
            });
            json_response(
                StatusCode::OK,
                long_running(
                    &format!("projects/{project}/locations/{location}/operations/create-{name}"),
                    repository,
                ),
            )
        }
        (&Method::DELETE, ["projects", project, "locations", location, "repositories", name]) => {
            let name = name.to_string();
            cloud.repositories.remove(&name);
            json_response(
                StatusCode::OK,
                long_running(
                    &format!("projects/{project}/locations/{location}/operations/delete-{name}"),
                    json!({}),
                ),
            )
        }
        _ => not_found(&format!("{method} {path}")),
    }
}

struct Gcloud {
    fake: FakeGoogleCloud,
    scratch: PathBuf,
}

impl Gcloud {
    fn new(name: &str) -> Self {
        let scratch = scratch_dir(name);
        std::fs::create_dir_all(scratch.join("gcloud")).unwrap();
        std::fs::create_dir_all(scratch.join("docker")).unwrap();
        std::fs::write(scratch.join("token"), "fake-access-token").unwrap();
        Gcloud {
            fake: FakeGoogleCloud::start(),
            scratch,
        }
    }

    fn xtask(&self, args: &[&str]) -> Output {
        let endpoint = self.fake.endpoint();
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("XTASK_STATE_DIR", &self.scratch)
            .env_remove("XTASK_TARGET")
            .env("CLOUDSDK_CONFIG", self.scratch.join("gcloud"))
            .env("CLOUDSDK_CORE_PROJECT", PROJECT)
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", self.scratch.join("token"))
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER", &endpoint)
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_SERVICEUSAGE", &endpoint)
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_ARTIFACTREGISTRY", &endpoint)
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDRESOURCEMANAGER", &endpoint)
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM", &endpoint)
            .env("CLOUDSDK_CORE_ACCOUNT", DEPLOYER)
            .env("DOCKER_CONFIG", self.scratch.join("docker"))
            .env("KUBECONFIG", self.scratch.join("kubeconfig"))
            .output()
            .unwrap();
        eprintln!("xtask {args:?} -> {}\n{}", output.status, stderr(&output));
        output
    }

    fn kubeconfig(&self) -> String {
        std::fs::read_to_string(self.scratch.join("kubeconfig")).unwrap_or_default()
    }

    fn docker_config(&self) -> Value {
        let text = std::fs::read_to_string(self.scratch.join("docker/config.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// The `$ gcloud …` commands a run echoed, without their arguments after the verb.
fn gcloud_verbs(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter_map(|line| line.strip_prefix("$ gcloud "))
        .map(|line| {
            line.split(' ')
                .take_while(|word| !word.starts_with("--"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn count(requests: &[String], wanted: &str) -> usize {
    requests.iter().filter(|r| r.as_str() == wanted).count()
}

#[test]
#[ignore = "needs gcloud with gke-gcloud-auth-plugin, and kubectl"]
fn cluster_up_creates_what_is_missing_once_and_cluster_down_removes_it() {
    let gcloud = Gcloud::new("fake-gke");
    let clusters = format!("/v1/projects/{PROJECT}/locations/{ZONE}/clusters");
    let repositories = format!("/v1/projects/{PROJECT}/locations/{REGION}/repositories");

    let first = gcloud.xtask(&["cluster-up", "--project", PROJECT]);
    assert!(first.status.success(), "first cluster-up failed");
    assert_eq!(
        gcloud_verbs(&first),
        [
            "services enable container.googleapis.com artifactregistry.googleapis.com",
            &format!("container clusters describe {CLUSTER}"),
            &format!("container clusters create {CLUSTER}"),
            &format!("artifacts repositories describe {REPOSITORY}"),
            &format!("artifacts repositories create {REPOSITORY}"),
            "auth configure-docker us-west1-docker.pkg.dev",
            &format!("container clusters get-credentials {CLUSTER}"),
        ]
    );
    let requests = gcloud.fake.requests();
    assert_eq!(
        count(
            &requests,
            &format!("POST /v1/projects/{PROJECT}/services:batchEnable")
        ),
        1,
        "{requests:#?}"
    );
    assert_eq!(count(&requests, &format!("POST {clusters}")), 1, "{requests:#?}");
    assert_eq!(
        count(&requests, &format!("POST {repositories}")),
        1,
        "{requests:#?}"
    );
    let kubeconfig = gcloud.kubeconfig();
    assert!(
        kubeconfig.contains("server: https://203.0.113.10"),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains(&format!("gke_{PROJECT}_{ZONE}_{CLUSTER}")),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains("gke-gcloud-auth-plugin"),
        "kubectl authenticates through the plugin:\n{kubeconfig}"
    );
    assert_eq!(
        gcloud.docker_config()["credHelpers"]["us-west1-docker.pkg.dev"],
        "gcloud"
    );

    let second = gcloud.xtask(&["cluster-up", "--project", PROJECT]);
    assert!(second.status.success());
    let verbs = gcloud_verbs(&second);
    assert!(
        !verbs.iter().any(|verb| verb.contains(" create ")),
        "nothing is created twice: {verbs:?}"
    );
    let requests = gcloud.fake.requests();
    assert_eq!(
        count(&requests, &format!("POST {clusters}")) + count(&requests, &format!("POST {repositories}")),
        0
    );

    let down = gcloud.xtask(&["cluster-down", "--yes", "--project", PROJECT]);
    assert!(down.status.success());
    let requests = gcloud.fake.requests();
    assert_eq!(
        count(&requests, &format!("DELETE {clusters}/{CLUSTER}")),
        1,
        "{requests:#?}"
    );
    assert_eq!(
        count(&requests, &format!("DELETE {repositories}/{REPOSITORY}")),
        1,
        "{requests:#?}"
    );

    let again = gcloud.xtask(&["cluster-down", "--yes", "--project", PROJECT]);
    assert!(again.status.success());
    let verbs = gcloud_verbs(&again);
    assert!(
        !verbs.iter().any(|verb| verb.contains(" delete ")),
        "nothing left to delete: {verbs:?}"
    );
}

#[test]
fn cluster_down_without_a_terminal_asks_for_yes_and_deletes_nothing() {
    let gcloud = Gcloud::new("fake-gke-ask");
    let output = gcloud.xtask(&["cluster-down", "--project", PROJECT]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("pass --yes"), "{}", stderr(&output));
    assert_eq!(
        gcloud.fake.requests(),
        Vec::<String>::new(),
        "no request reached the cloud"
    );
}

#[test]
#[ignore = "needs gcloud with gke-gcloud-auth-plugin, and kubectl"]
fn tools_reads_the_iam_policies_and_names_the_roles_that_are_missing() {
    let gcloud = Gcloud::new("tools-iam");
    let tools = ["tools", "--target", "gke", "--project", PROJECT];

    // A caller who may not read the project's policy is told so; nothing is judged.
    let denied = gcloud.xtask(&tools);
    assert!(
        stdout(&denied).contains(&format!(
            "NOT CHECKED: {DEPLOYER} may not read project {PROJECT}'s IAM policy"
        )),
        "{}",
        stdout(&denied)
    );

    let deployer = format!("serviceAccount:{DEPLOYER}");
    let nodes = format!("serviceAccount:{PROJECT_NUMBER}-compute@developer.gserviceaccount.com");
    let project_policy = |extra: &[(&str, &str)]| {
        let mut bindings = vec![
            json!({"role": "roles/container.admin", "members": [deployer]}),
            json!({"role": "roles/artifactregistry.admin", "members": [deployer]}),
            json!({"role": "roles/iam.serviceAccountUser", "members": ["group:platform@example.com"]}),
            json!({"role": "roles/container.defaultNodeServiceAccount", "members": [nodes]}),
        ];
        bindings.extend(
            extra
                .iter()
                .map(|(role, member)| json!({"role": role, "members": [member]})),
        );
        json!({"version": 1, "etag": "BwYFi0Ihx8s=", "bindings": bindings})
    };
    gcloud
        .fake
        .set_policy(&format!("projects/{PROJECT}"), project_policy(&[]));
    let judged = gcloud.xtask(&tools);
    let out = stdout(&judged);
    let line = |why: &str| {
        out.lines()
            .find(|l| l.starts_with(why))
            .unwrap_or_else(|| panic!("{why}: {out}"))
            .to_owned()
    };
    assert!(line("cluster-up: create the cluster").ends_with("yes (roles/container.admin)"));
    assert!(line("ship: push the image").ends_with("yes (roles/artifactregistry.admin)"));
    assert!(
        line("cluster-up: create nodes that run as")
            .contains("PERHAPS: roles/iam.serviceAccountUser through group:platform@example.com")
    );
    assert!(line("cluster-up: enable the").contains(&format!(
        "MISSING: grant {deployer} roles/serviceusage.serviceUsageAdmin (`gcloud projects add-iam-policy-binding {PROJECT} --member {deployer} --role roles/serviceusage.serviceUsageAdmin`)"
    )));
    assert!(
        line("the nodes: pull the image")
            .contains(&format!("MISSING: grant {nodes} roles/artifactregistry.reader"))
    );
    assert!(line("the nodes: write their logs").ends_with("yes (roles/container.defaultNodeServiceAccount)"));
    // No cluster yet: its access is left for after cluster-up, not failed.
    assert!(
        out.contains("cluster access") && out.contains("NOT CHECKED: no such context yet"),
        "{out}"
    );
    assert!(!judged.status.success());
    assert!(stderr(&judged).contains(&format!(
        "missing: roles/serviceusage.serviceUsageAdmin for {DEPLOYER}, roles/artifactregistry.reader for {PROJECT_NUMBER}-compute@developer.gserviceaccount.com;"
    )), "{}", stderr(&judged));

    // Grants below the project count too: on the nodes' account and on the repository.
    gcloud.fake.set_policy(
        &format!("projects/{PROJECT}"),
        project_policy(&[("roles/serviceusage.serviceUsageAdmin", &deployer)]),
    );
    gcloud.fake.set_policy(
        &format!("projects/-/serviceAccounts/{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"),
        json!({"etag": "BwYFi0Ihx8s=", "bindings": [{"role": "roles/iam.serviceAccountUser", "members": [deployer]}]}),
    );
    gcloud.fake.set_policy(
        &format!("projects/{PROJECT}/locations/{REGION}/repositories/{REPOSITORY}"),
        json!({"etag": "BwYFi0Ihx8s=", "bindings": [{"role": "roles/artifactregistry.reader", "members": [nodes]}]}),
    );
    let granted = gcloud.xtask(&tools);
    assert!(granted.status.success(), "{}", stdout(&granted));
    let out = stdout(&granted);
    assert!(
        out.lines().any(|l| l.starts_with("cluster-up: create nodes")
            && l.ends_with("yes (roles/iam.serviceAccountUser)")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("the nodes: pull") && l.ends_with("yes (roles/artifactregistry.reader)")),
        "{out}"
    );
    let requests = gcloud.fake.requests();
    for read in [
        format!("POST /v1/projects/{PROJECT}:getIamPolicy"),
        format!("GET /v1/projects/{PROJECT}/locations/{REGION}/repositories/{REPOSITORY}:getIamPolicy"),
        format!(
            "POST /v1/projects/-/serviceAccounts/{PROJECT_NUMBER}-compute@developer.gserviceaccount.com:getIamPolicy"
        ),
    ] {
        assert!(requests.contains(&read), "{read} not in {requests:#?}");
    }
}

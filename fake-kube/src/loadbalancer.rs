//! Services of type LoadBalancer: a TCP proxy per service port, listening on a loopback
//! address of its own (127.0.0.2, 127.0.0.3, …; Linux answers on all of 127/8) at the
//! service's port, forwarding each connection to the next ready endpoint round robin.
//! Once it listens, the service's `status.loadBalancer.ingress` names the address, as a
//! cloud's load balancer controller reports it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::cluster::Shared;
use crate::controller::replicaset::pod_is_ready;
use crate::resources::IDS;
use crate::selector::LabelSelector;
use crate::store::{Part, Writer};
use crate::util::{is_deleting, name_of, namespace_of, uid_of};

const MANAGER: &str = "cloud-controller-manager";
const COMPONENT: &str = "service-controller";
const TICK: Duration = Duration::from_millis(250);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The next loopback address to try, shared by every cluster in the process so their
/// load balancers do not collide; a bind failure moves on to the next address, which
/// also steps around other processes' listeners.
static NEXT_ADDRESS: AtomicU32 = AtomicU32::new(1);

pub(crate) fn next_loopback() -> Ipv4Addr {
    // 127.0.0.2 .. 127.255.255.254, skipping .0 and .255 in the last octet.
    let n = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed) % (250 * 250 * 250);
    Ipv4Addr::new(
        127,
        (n / 62_500) as u8,
        ((n / 250) % 250) as u8,
        (n % 250 + 1) as u8,
    )
}

/// The tasks that serve a load balancer's (or a gateway's) listeners: dropped, they stop,
/// and the listeners close.
pub(crate) struct Serving(pub(crate) Vec<JoinHandle<()>>);

impl Drop for Serving {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

struct Balancer {
    /// The service's ports when the listeners were made; a change rebuilds them.
    ports: Vec<u16>,
    _serving: Serving,
}

fn service_ports(service: &Value) -> Vec<u16> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("port")?.as_u64().map(|p| p as u16))
        .collect()
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut balancers: HashMap<String, Balancer> = HashMap::new();
    let mut revision = shared.store().watch_revision();
    let mut shutdown = shared.shutdown_signal();
    loop {
        let services: Vec<Arc<Value>> = shared
            .store()
            .list(IDS.services, None)
            .into_iter()
            .filter(|s| s.pointer("/spec/type") == Some(&json!("LoadBalancer")) && !is_deleting(s))
            .collect();
        balancers.retain(|uid, balancer| {
            services
                .iter()
                .any(|s| uid_of(s) == uid && service_ports(s) == balancer.ports)
        });
        for service in &services {
            if balancers.contains_key(uid_of(service)) {
                continue;
            }
            if let Some(balancer) = open(&shared, service).await {
                balancers.insert(uid_of(service).to_string(), balancer);
            }
        }
        revision.mark_unchanged();
        tokio::select! {
            _ = revision.changed() => {}
            () = tokio::time::sleep(TICK) => {}
            () = shutdown.wait() => return,
        }
    }
}

/// Binds every port of a service on one fresh address and publishes the address.
async fn open(shared: &Arc<Shared>, service: &Arc<Value>) -> Option<Balancer> {
    let ports = service_ports(service);
    if ports.is_empty() {
        return None;
    }
    shared.store().record_event(
        service,
        false,
        "EnsuringLoadBalancer",
        "Ensuring load balancer",
        COMPONENT,
    );
    let hostname = shared.options.load_balancer_hostname;
    let mut listeners = Vec::new();
    let mut chosen: Option<IpAddr> = None;
    // Each candidate address must take every port; give up after a few hundred.
    for _ in 0..300 {
        let ip: IpAddr = if hostname {
            Ipv4Addr::LOCALHOST.into()
        } else {
            next_loopback().into()
        };
        let mut bound = Vec::new();
        for port in &ports {
            match TcpListener::bind(SocketAddr::new(ip, *port)).await {
                Ok(listener) => bound.push((*port, listener)),
                Err(_) => break,
            }
        }
        if bound.len() == ports.len() {
            listeners = bound;
            chosen = Some(ip);
            break;
        }
        if hostname {
            break;
        }
    }
    let Some(ip) = chosen else {
        shared.store().record_event(
            service,
            true,
            "SyncLoadBalancerFailed",
            &format!("Error syncing load balancer: no loopback address has ports {ports:?} free"),
            COMPONENT,
        );
        return None;
    };
    let namespace = namespace_of(service).to_string();
    let name = name_of(service).to_string();
    let mut tasks = Vec::new();
    for (port, listener) in listeners {
        tasks.push(tokio::spawn(proxy(
            shared.clone(),
            namespace.clone(),
            name.clone(),
            port,
            listener,
        )));
        if hostname {
            // `localhost` may resolve to ::1 first; answer there too when possible.
            if let Ok(v6) =
                TcpListener::bind(SocketAddr::new(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), port)).await
            {
                tasks.push(tokio::spawn(proxy(
                    shared.clone(),
                    namespace.clone(),
                    name.clone(),
                    port,
                    v6,
                )));
            }
        }
    }
    let ingress = if hostname {
        json!([{"hostname": "localhost"}])
    } else {
        json!([{"ip": ip.to_string(), "ipMode": "VIP"}])
    };
    let mut store = shared.store();
    if let Some(live) = store.get_by(IDS.services, &namespace, &name).cloned() {
        let mut next = (*live).clone();
        next["status"] = json!({"loadBalancer": {"ingress": ingress}});
        let _ = store.update(
            IDS.services,
            &namespace,
            &name,
            next,
            Part::Status,
            &Writer::system(MANAGER),
        );
        store.record_event(
            &live,
            false,
            "EnsuredLoadBalancer",
            "Ensured load balancer",
            COMPONENT,
        );
    }
    Some(Balancer {
        ports,
        _serving: Serving(tasks),
    })
}

/// Where each ready endpoint of the service's port answers.
pub(crate) fn endpoints(shared: &Shared, namespace: &str, name: &str, port: u16) -> Vec<SocketAddr> {
    let store = shared.store();
    let Some(service) = store.get_by(IDS.services, namespace, name).cloned() else {
        return Vec::new();
    };
    let Some(selector) = service.pointer("/spec/selector").and_then(Value::as_object) else {
        return Vec::new();
    };
    let selector = LabelSelector::from_map(selector);
    let Some(service_port) = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(port)))
        })
        .cloned()
    else {
        return Vec::new();
    };
    let target = service_port.get("targetPort").cloned().unwrap_or(json!(port));
    store
        .list(IDS.pods, Some(namespace))
        .into_iter()
        .filter(|pod| !is_deleting(pod) && pod_is_ready(pod) && selector.matches(pod))
        .filter_map(|pod| {
            let container_port = crate::ports::resolve(&crate::ports::of_pod(&pod), &target)?;
            shared
                .ports(uid_of(&pod))
                .into_iter()
                .find(|p| p.container_port == container_port)
                .map(|p| p.address)
        })
        .collect()
}

async fn proxy(shared: Arc<Shared>, namespace: String, name: String, port: u16, listener: TcpListener) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        let (namespace, name, next) = (namespace.clone(), name.clone(), next.clone());
        tokio::spawn(async move {
            let targets = endpoints(&shared, &namespace, &name, port);
            if targets.is_empty() {
                // No ready endpoint: the connection is refused, as kube-proxy rejects it.
                return;
            }
            let first = next.fetch_add(1, Ordering::Relaxed);
            for attempt in 0..targets.len() {
                let target = targets[(first + attempt) % targets.len()];
                if let Ok(Ok(mut upstream)) =
                    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return;
                }
            }
        });
    }
}

//! Several pbxgate nodes for one Asterisk on one PostgreSQL database: at
//! most one node at a time owns the Asterisk — holds its ARI application
//! (call control, held calls) — and the others stand by, answering requests
//! as usual. Ownership is a lease row (`store::ClusterStore`), renewed every
//! third of `cluster.lease_secs`, taken over once it lapsed.
//!
//! Fencing: a node acts as owner only until `sent + lease - margin`, where
//! `sent` is when it sent the last renewal the database accepted. The
//! database set that lease to end at `its now + lease`, no earlier than
//! `sent + lease`, so the node has stopped before any other can take over,
//! whatever the network does; and every decision is claimed in the database
//! under the lease's epoch as well (`DecisionStore::claim_call`).
//!
//! With SQLite there is one node: it is the owner, always.

use std::sync::Arc;
use std::time::Duration;

use store::{ClusterStore, ClusterView, Store};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ClusterSettings;

/// This node's part for one Asterisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The only node (SQLite): always acts.
    Sole,
    /// Owns the Asterisk under lease `epoch` until `until` (this node's
    /// monotonic clock).
    Owner {
        epoch: i64,
        since_ms: i64,
        until: Instant,
    },
    /// Another node owns it, or nobody could be confirmed.
    Standby,
}

impl Role {
    /// The fence to claim decisions under while this node may act: `None`
    /// when not acting, `Some(None)` when acting without a lease (sole node).
    pub fn acting(&self) -> Option<Option<i64>> {
        match self {
            Role::Sole => Some(None),
            Role::Owner { epoch, until, .. } if Instant::now() < *until => Some(Some(*epoch)),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Role::Sole => "sole",
            Role::Owner { .. } => "owner",
            Role::Standby => "standby",
        }
    }
}

/// Who this node is, for the Asterisk it serves, and its current role.
#[derive(Clone)]
pub struct Membership {
    pub node: String,
    pub pbx: String,
    pub lease: Duration,
    role: watch::Receiver<Role>,
    /// Whether the ARI application may be held (owner or sole).
    gate: watch::Receiver<bool>,
    store: Option<Store>,
    stop: Arc<watch::Sender<bool>>,
}

impl Membership {
    /// The sole node of an embedded database.
    pub fn sole(settings: &ClusterSettings) -> Membership {
        let (_, role) = watch::channel(Role::Sole);
        let (_, gate) = watch::channel(true);
        Membership {
            node: settings.node.clone(),
            pbx: settings.pbx.clone(),
            lease: settings.lease,
            role,
            gate,
            store: None,
            stop: Arc::new(watch::Sender::new(false)),
        }
    }

    /// A node whose role someone else drives (engine tests).
    #[cfg(test)]
    pub(crate) fn driven(node: &str, pbx: &str, role: watch::Receiver<Role>) -> Membership {
        let (_, gate) = watch::channel(true);
        Membership {
            node: node.into(),
            pbx: pbx.into(),
            lease: Duration::from_secs(3),
            role,
            gate,
            store: None,
            stop: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Starts taking and renewing the lease (PostgreSQL); stands by until
    /// the database confirms it.
    pub fn start(settings: &ClusterSettings, store: &Store) -> Membership {
        let (role_tx, role) = watch::channel(Role::Standby);
        let (gate_tx, gate) = watch::channel(false);
        let stop = Arc::new(watch::Sender::new(false));
        tokio::spawn(run(
            settings.clone(),
            store.clone(),
            role_tx,
            gate_tx,
            stop.subscribe(),
        ));
        Membership {
            node: settings.node.clone(),
            pbx: settings.pbx.clone(),
            lease: settings.lease,
            role,
            gate,
            store: Some(store.clone()),
            stop,
        }
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    pub fn roles(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Open while this node may hold the ARI application.
    pub fn gate(&self) -> watch::Receiver<bool> {
        self.gate.clone()
    }

    /// Whether several nodes may serve this Asterisk (a shared database).
    pub fn shared(&self) -> bool {
        self.store.is_some()
    }

    /// Stops acting and gives the lease up, so that another node takes over
    /// at once rather than when the lease lapses.
    pub async fn leave(&self) {
        let held = self.role();
        self.stop.send_replace(true);
        let Some(store) = &self.store else { return };
        let Role::Owner { epoch, .. } = held else {
            return;
        };
        // Stopped acting (the ARI application let go) before another may start.
        let mut role = self.role.clone();
        let _ = tokio::time::timeout(self.lease, role.wait_for(|r| r.acting().is_none())).await;
        if let Err(e) =
            tokio::time::timeout(self.lease, store.release_pbx(&self.pbx, &self.node, epoch))
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(error = %e, "cannot give up the lease of the Asterisk; another node takes over when it lapses");
        }
    }

    /// At shutdown: when this node owns the Asterisk and another node
    /// serving it was seen lately, gives the lease up so that one adopts
    /// the held calls at once; false when there is nobody to hand over to.
    pub async fn hand_over(&self) -> bool {
        if !matches!(self.role(), Role::Owner { .. }) {
            return false;
        }
        let others = match tokio::time::timeout(self.lease, self.view()).await {
            Ok(Some(Ok(view))) => view
                .nodes
                .iter()
                .any(|n| n.pbx == self.pbx && n.node != self.node),
            _ => false,
        };
        if others {
            tracing::info!(
                "stopping: handing the Asterisk and its held calls over to another node"
            );
            self.leave().await;
        }
        others
    }

    /// This node's part, and the view of its Asterisk from the database.
    pub async fn status(&self) -> serde_json::Value {
        let mut out = serde_json::json!({
            "node": self.node,
            "pbx": self.pbx,
            "role": self.role().name(),
            "shared_database": self.shared(),
        });
        match tokio::time::timeout(self.lease, self.view()).await {
            Ok(None) => {}
            Ok(Some(Ok(view))) => {
                let d = describe(&view, &self.pbx);
                out["owner"] = d["owner"].clone();
                out["nodes"] = d["nodes"].clone();
            }
            Ok(Some(Err(e))) => out["error"] = e.to_string().into(),
            Err(_) => out["error"] = "the database did not answer in time".into(),
        }
        out
    }

    /// Owners and nodes as the database has them (`None` for SQLite).
    pub async fn view(&self) -> Option<Result<ClusterView, store::Error>> {
        let store = self.store.as_ref()?;
        Some(store.cluster_view(recent(self.lease)).await)
    }
}

/// The operator view of one Asterisk (`/healthz`, the Status page, `pbxgate
/// cluster`): its owner, since when, the lease's age, and the nodes. Ages are
/// measured on the database's clock, as the leases are.
pub fn describe(view: &ClusterView, pbx: &str) -> serde_json::Value {
    let owner = view.owners.iter().find(|o| o.pbx == pbx);
    let live = owner.filter(|o| o.expires_ms > view.now_ms);
    serde_json::json!({
        "pbx": pbx,
        "owner": live.map(|o| serde_json::json!({
            "node": o.node,
            "epoch": o.epoch,
            "since_ms": o.since_ms,
            "owner_for_ms": view.now_ms - o.since_ms,
            "lease_age_ms": view.now_ms - o.renewed_ms,
            "expires_in_ms": o.expires_ms - view.now_ms,
        })),
        "nodes": view.nodes.iter().filter(|n| n.pbx == pbx).map(|n| serde_json::json!({
            "node": n.node,
            "role": if live.is_some_and(|o| o.node == n.node) { "owner" } else { "standby" },
            "started_ms": n.started_ms,
            "seen_ago_ms": view.now_ms - n.seen_ms,
        })).collect::<Vec<_>>(),
    })
}

/// Nodes seen within this long are listed.
pub fn recent(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis().saturating_mul(3)).unwrap_or(i64::MAX)
}

async fn run(
    settings: ClusterSettings,
    store: Store,
    role: watch::Sender<Role>,
    gate: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let lease_ms = i64::try_from(settings.lease.as_millis()).unwrap_or(i64::MAX);
    let renew = settings.lease / 3;
    // A standby tries more often: a lapsed lease is taken soon after.
    let retry = settings.lease / 6;
    let margin = settings.lease / 6;
    let started_ms = crate::clock::now_ms();
    // Rows of nodes gone this long are removed (the view lists only recent ones).
    let forget_ms = recent(settings.lease).saturating_mul(100);
    let mut last_seen: Option<Instant> = None;
    let set = |r: Role| {
        let open = r.acting().is_some();
        role.send_replace(r);
        gate.send_if_modified(|g| std::mem::replace(g, open) != open);
    };
    loop {
        if *stop.borrow() {
            set(Role::Standby);
            return;
        }
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            renew.max(Duration::from_millis(200)),
            store.own_pbx(&settings.pbx, &settings.node, lease_ms),
        )
        .await;
        let current = role.borrow().clone();
        match answer {
            Ok(Ok(Some(lease))) => {
                let until = sent + settings.lease.saturating_sub(margin);
                match current {
                    Role::Owner { epoch, .. } if epoch == lease.epoch => {}
                    _ => tracing::info!(
                        node = settings.node,
                        pbx = settings.pbx,
                        epoch = lease.epoch,
                        "this node owns the Asterisk now: holding its ARI application"
                    ),
                }
                set(Role::Owner {
                    epoch: lease.epoch,
                    since_ms: lease.since_ms,
                    until,
                });
            }
            Ok(Ok(None)) => {
                if matches!(current, Role::Owner { .. }) {
                    tracing::warn!(
                        node = settings.node,
                        pbx = settings.pbx,
                        "another node owns the Asterisk now: standing by"
                    );
                }
                set(Role::Standby);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot renew the lease of the Asterisk");
            }
            Err(_) => tracing::warn!("the database did not answer the lease renewal in time"),
        }
        if last_seen.is_none_or(|t| t.elapsed() >= settings.lease) {
            match tokio::time::timeout(
                renew.max(Duration::from_millis(200)),
                store.node_seen(&settings.node, &settings.pbx, started_ms, forget_ms),
            )
            .await
            {
                Ok(Ok(())) => last_seen = Some(Instant::now()),
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot record this node as seen"),
                Err(_) => {}
            }
        }
        let owner_until = match &*role.borrow() {
            Role::Owner { until, .. } => Some(*until),
            _ => None,
        };
        let next = sent + if owner_until.is_some() { renew } else { retry };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = async {
                match owner_until {
                    Some(u) => tokio::time::sleep_until(u).await,
                    None => std::future::pending().await,
                }
            } => {
                // Not renewed in time: stop acting now (fencing).
                tracing::error!(
                    node = settings.node,
                    pbx = settings.pbx,
                    "lease of the Asterisk not renewed in time (database unreachable?): no longer acting as its owner"
                );
                set(Role::Standby);
            }
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_owner_acts_only_until_its_lease_would_lapse() {
        let owner = Role::Owner {
            epoch: 7,
            since_ms: 1,
            until: Instant::now() + Duration::from_secs(5),
        };
        assert_eq!(owner.acting(), Some(Some(7)));
        let lapsed = Role::Owner {
            epoch: 7,
            since_ms: 1,
            until: Instant::now(),
        };
        assert_eq!(lapsed.acting(), None);
        assert_eq!(Role::Standby.acting(), None);
        assert_eq!(Role::Sole.acting(), Some(None));
    }

    #[tokio::test]
    async fn a_node_takes_over_when_the_owner_stops_renewing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(
            &format!("sqlite://{}", dir.path().join("c.db").display()),
            &store::ConnectOptions::default(),
        )
        .await
        .unwrap();
        let settings = |node: &str| ClusterSettings {
            node: node.into(),
            pbx: "pbx".into(),
            lease: Duration::from_millis(1200),
        };
        let a = Membership::start(&settings("a"), &store);
        let mut roles = a.roles();
        tokio::time::timeout(
            Duration::from_secs(3),
            roles.wait_for(|r| r.acting().is_some()),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(*a.gate().borrow());
        let b = Membership::start(&settings("b"), &store);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(b.role(), Role::Standby, "a renews: b stands by");
        assert!(!*b.gate().borrow());
        // a leaves: b owns it at once, under a new epoch.
        a.leave().await;
        let mut b_roles = b.roles();
        let taken = tokio::time::timeout(
            Duration::from_secs(2),
            b_roles.wait_for(|r| r.acting().is_some()),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert!(matches!(taken, Role::Owner { epoch: 2, .. }), "{taken:?}");
        assert!(a.role().acting().is_none());
        let view = b.view().await.unwrap().unwrap();
        assert_eq!(view.owners[0].node, "b");
        assert_eq!(view.nodes.len(), 2, "{view:?}");
        b.leave().await;
        store.close().await;
    }
}

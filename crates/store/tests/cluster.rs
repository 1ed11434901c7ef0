//! Several nodes on one database: one owner per Asterisk (a lease on the
//! database's clock, taken over only once it lapsed, a new epoch each time),
//! and the one decision per held call, arbitrated by the first claim and
//! fenced by the lease — on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use store::*;

#[tokio::test]
async fn one_node_owns_a_pbx_until_its_lease_lapses() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let a = s.own_pbx("pbx1", "node-a", 400).await.unwrap().unwrap();
        assert_eq!(a.epoch, 1, "{b:?}");
        // Another node cannot take it while the lease runs; another PBX is free.
        assert_eq!(
            s.own_pbx("pbx1", "node-b", 400).await.unwrap(),
            None,
            "{b:?}"
        );
        assert_eq!(
            s.own_pbx("pbx2", "node-b", 400)
                .await
                .unwrap()
                .unwrap()
                .epoch,
            1
        );
        // Renewing keeps the epoch and since.
        let renewed = s.own_pbx("pbx1", "node-a", 400).await.unwrap().unwrap();
        assert_eq!(renewed, a, "{b:?}");
        let view = s.cluster_view(60_000).await.unwrap();
        let owner = view.owners.iter().find(|o| o.pbx == "pbx1").unwrap();
        assert_eq!(owner.node, "node-a");
        assert!(
            owner.expires_ms > view.now_ms && owner.expires_ms <= view.now_ms + 400,
            "{owner:?} {}",
            view.now_ms
        );

        // Lapsed: the other node takes it with a new epoch.
        tokio::time::sleep(Duration::from_millis(450)).await;
        let taken = s.own_pbx("pbx1", "node-b", 400).await.unwrap().unwrap();
        assert_eq!(taken.epoch, 2, "{b:?}");
        assert!(taken.since_ms > a.since_ms);
        assert_eq!(
            s.own_pbx("pbx1", "node-a", 400).await.unwrap(),
            None,
            "{b:?}"
        );

        // Released: free at once, for a new epoch.
        s.release_pbx("pbx1", "node-a", 2).await.unwrap(); // not a's: no effect
        assert_eq!(
            s.own_pbx("pbx1", "node-a", 400).await.unwrap(),
            None,
            "{b:?}"
        );
        s.release_pbx("pbx1", "node-b", 2).await.unwrap();
        assert_eq!(
            s.own_pbx("pbx1", "node-a", 400)
                .await
                .unwrap()
                .unwrap()
                .epoch,
            3
        );

        // A node whose own lease lapsed starts a new epoch when it takes it again.
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            s.own_pbx("pbx1", "node-a", 400)
                .await
                .unwrap()
                .unwrap()
                .epoch,
            4
        );
    });
}

#[tokio::test]
async fn the_nodes_seen_lately_are_listed() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        const KEEP: i64 = 3_600_000;
        s.node_seen("node-a", "pbx1", 1000, KEEP).await.unwrap();
        s.node_seen("node-b", "pbx1", 2000, KEEP).await.unwrap();
        s.node_seen("node-a", "pbx1", 3000, KEEP).await.unwrap(); // restarted
        let view = s.cluster_view(60_000).await.unwrap();
        let nodes: Vec<(&str, i64)> = view
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), n.started_ms))
            .collect();
        assert_eq!(nodes, [("node-a", 3000), ("node-b", 2000)], "{b:?}");
        assert!(view.nodes.iter().all(|n| n.seen_ms <= view.now_ms));
        // Not seen within the window: not listed.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(s.cluster_view(10).await.unwrap().nodes.is_empty(), "{b:?}");
        // A node's visit forgets the nodes not seen for its window.
        s.node_seen("node-c", "pbx1", 4000, 10).await.unwrap();
        let left: Vec<String> = s
            .cluster_view(KEEP)
            .await
            .unwrap()
            .nodes
            .into_iter()
            .map(|n| n.node)
            .collect();
        assert_eq!(left, ["node-c"], "{b:?}");
    });
}

#[tokio::test]
async fn the_first_claim_decides_a_call_and_a_lapsed_owner_cannot_claim() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let lease = s.own_pbx("pbx1", "node-a", 400).await.unwrap().unwrap();
        let fence = Some(("pbx1", lease.epoch));
        assert_eq!(
            s.claim_call("ch1", "node-a", "accept", fence)
                .await
                .unwrap(),
            Claim::Won,
            "{b:?}"
        );
        // A second claim, from any node, finds the first.
        let taken = Claim::Taken {
            node: "node-a".into(),
            decision: "accept".into(),
        };
        assert_eq!(
            s.claim_call("ch1", "node-b", "refuse", None).await.unwrap(),
            taken,
            "{b:?}"
        );
        assert_eq!(
            s.claim_call("ch1", "node-a", "refuse", fence)
                .await
                .unwrap(),
            taken
        );
        assert_eq!(
            s.call_claim("ch1").await.unwrap(),
            Some(("node-a".into(), "accept".into()))
        );
        // A standby's claim (no fence) counts like any other.
        assert_eq!(
            s.claim_call("ch2", "node-b", "refuse", None).await.unwrap(),
            Claim::Won
        );
        // Withdrawn by its node only: then another may claim.
        s.unclaim_call("ch2", "node-a").await.unwrap();
        assert!(s.call_claim("ch2").await.unwrap().is_some());
        s.unclaim_call("ch2", "node-b").await.unwrap();
        assert_eq!(
            s.claim_call("ch2", "node-a", "accept", fence)
                .await
                .unwrap(),
            Claim::Won
        );

        // Under a wrong epoch or another node's name: fenced.
        assert_eq!(
            s.claim_call("ch3", "node-a", "accept", Some(("pbx1", lease.epoch + 1)))
                .await
                .unwrap(),
            Claim::Fenced,
            "{b:?}"
        );
        assert_eq!(
            s.claim_call("ch3", "node-b", "accept", fence)
                .await
                .unwrap(),
            Claim::Fenced
        );
        // Once the lease lapsed, the old owner cannot claim, even before another took it.
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            s.claim_call("ch3", "node-a", "accept", fence)
                .await
                .unwrap(),
            Claim::Fenced,
            "{b:?}"
        );
        assert_eq!(s.call_claim("ch3").await.unwrap(), None);

        // Old claims are pruned.
        assert_eq!(s.prune_claims(i64::MAX).await.unwrap(), 2, "{b:?}");
        assert_eq!(s.call_claim("ch1").await.unwrap(), None);
    });
}

#[tokio::test]
async fn concurrent_claims_from_many_nodes_have_one_winner() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        for call in 0..20 {
            let id = format!("race{call}");
            let mut all = tokio::task::JoinSet::new();
            for node in 0..4 {
                let s = s.clone();
                let id = id.clone();
                all.spawn(async move {
                    s.claim_call(&id, &format!("node-{node}"), "accept", None)
                        .await
                        .unwrap()
                });
            }
            let mut won = 0;
            while let Some(r) = all.join_next().await {
                if r.unwrap() == Claim::Won {
                    won += 1;
                }
            }
            assert_eq!(won, 1, "{b:?} {id}");
        }
    });
}

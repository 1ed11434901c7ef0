//! Queues, ring groups, extension groups, departments and routes, read from
//! the rig's Asterisk: queues live over AMI, the rest as the rig describes
//! them in contrib's pbxgate_directory.conf (scripts/rig/up.sh) and its
//! dialplan.

use asterisk::testing::{Rig, rig};
use serde_json::{Value, json};
use store::testing::TestDb;

use super::call;
use crate::calls::{CALLS, pbx_config, wait_connected};
use crate::kit::*;

/// pbxgate on the rig; `cdrapi` is the default user, `rg` may list ring groups.
struct Bench {
    srv: Server,
    _db: TestDb,
    c: reqwest::Client,
    cookie: String,
}

impl Bench {
    async fn start(rig: &Rig) -> Bench {
        let db = dbs().await.remove(0);
        let config = format!(
            "{}[[https_api.users]]\nusername = \"rg\"\npassword = \"pw2\"\nallow = [\"listRingGroup\"]\n",
            pbx_config(rig, "")
        );
        let srv = Server::start(&db, &config).await;
        wait_connected(&srv).await;
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        Bench {
            srv,
            _db: db,
            c,
            cookie,
        }
    }

    async fn ask(&self, action: &str, params: Value) -> Value {
        call(&self.srv, &self.c, &self.cookie, action, params).await
    }

    /// A successful answer's `response`.
    async fn ok(&self, action: &str, params: Value) -> Value {
        let r = self.ask(action, params.clone()).await;
        assert_eq!(r["status"], 0, "{action} {params}: {r}");
        r["response"].clone()
    }
}

/// A list's items, by one field.
fn column(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|i| i[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

const EXTRA_MEMBER: &str = "Local/1001@ext-local/n";

#[tokio::test]
async fn a_queues_members_and_their_state_are_live() {
    let Some(rig) = rig() else { return };
    // Other tests ring queue 6000: its members change only while no call runs.
    let _one_at_a_time = CALLS.lock().await;
    let ami = crate::calls::connected_ami(&rig).await;
    let _ = ami
        .action(
            "QueueRemove",
            &[("Queue", "6000"), ("Interface", EXTRA_MEMBER)],
        )
        .await;
    let b = Bench::start(&rig).await;

    let list = b.ok("listQueue", json!({"sidx": "extension"})).await;
    assert_eq!(list["total_item"], 3, "{list}");
    let q = &list["queue"][0];
    assert_eq!(q["extension"], "6000", "{q}");
    assert_eq!(q["queue_name"], "Rig support", "{q}");
    assert_eq!(q["strategy"], "ringall", "{q}");
    assert_eq!(q["members"], "1000", "{q}");
    let m = &q["member_list"][0];
    assert_eq!(m["member"], "1000", "{m}");
    assert_eq!(m["interface"], "Local/1000@ext-local/n", "{m}");
    assert_eq!(m["paused"], "no", "{m}");
    let state = m["status"].as_str().unwrap();
    assert!(
        ["Idle", "Unavailable", "InUse", "Ringing", "Busy", "Unknown"].contains(&state),
        "{m}"
    );
    let got = b.ok("getQueue", json!({"queue": "6000"})).await;
    assert_eq!(got["queue"]["members"], "1000", "{got}");
    assert_eq!(got["queue"]["member_list"][0]["status"], state, "{got}");
    // The UCM's options: only the fields asked for.
    let list = b
        .ok(
            "listQueue",
            json!({"options": "extension,queue_name,members"}),
        )
        .await;
    let keys: Vec<&String> = list["queue"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{list}");
    // Pages of one, sorted: 6200, then 6100 (no names in the directory file).
    let p = |page: u64| json!({"sidx": "extension", "sord": "desc", "item_num": 1, "page": page});
    let one = b.ok("listQueue", p(1)).await;
    assert_eq!(one["queue"][0]["queue_name"], "6200", "{one}");
    assert_eq!(one["queue"][0]["members"], "1099", "{one}");
    assert_eq!(
        (one["total_item"].clone(), one["total_page"].clone()),
        (json!(3), json!(3))
    );
    let two = b.ok("listQueue", p(2)).await;
    assert_eq!(two["queue"][0]["queue_name"], "6100", "{two}");
    assert_eq!(two["queue"][0]["strategy"], "leastrecent", "{two}");
    assert_eq!(two["queue"][0]["members"], "1001,1097", "{two}");
    assert_eq!(two["page"], 2);
    let three = b.ok("listQueue", p(3)).await;
    assert_eq!(three["queue"][0]["extension"], "6000", "{three}");

    // A member added live, paused, shows up at once; removed, it is gone.
    let r = ami
        .action(
            "QueueAdd",
            &[
                ("Queue", "6000"),
                ("Interface", EXTRA_MEMBER),
                ("Paused", "true"),
                ("MemberName", "Agent 1001"),
            ],
        )
        .await
        .unwrap();
    assert!(r.is_success(), "{:?}", r.response);
    let got = b.ok("getQueue", json!({"queue": 6000})).await;
    let q = &got["queue"];
    assert_eq!(q["members"], "1000,1001", "{q}");
    let added = &q["member_list"][1];
    assert_eq!(added["member"], "1001", "{added}");
    assert_eq!(added["member_name"], "Agent 1001", "{added}");
    assert_eq!(added["membership"], "dynamic", "{added}");
    assert_eq!(added["paused"], "yes", "{added}");
    let list = b.ok("listQueue", json!({"sidx": "extension"})).await;
    assert_eq!(list["queue"][0]["members"], "1000,1001", "{list}");
    let r = ami
        .action(
            "QueueRemove",
            &[("Queue", "6000"), ("Interface", EXTRA_MEMBER)],
        )
        .await
        .unwrap();
    assert!(r.is_success(), "{:?}", r.response);
    let got = b.ok("getQueue", json!({"queue": "6000"})).await;
    assert_eq!(got["queue"]["members"], "1000", "{got}");

    // Unknown queue -16; missing -1; a name that could carry AMI syntax -15.
    assert_eq!(
        b.ask("getQueue", json!({"queue": "6999"})).await["status"],
        -16
    );
    assert_eq!(b.ask("getQueue", json!({})).await["status"], -1);
    assert_eq!(
        b.ask("getQueue", json!({"queue": "6000\r\nAction: Logoff"}))
            .await["status"],
        -15
    );
    assert_eq!(
        b.ask("getQueue", json!({"queue": ["6000"]})).await["status"],
        -1
    );
    b.srv.stop().await;
    ami.shutdown();
}

#[tokio::test]
async fn ring_groups_need_the_permission_and_list_their_members() {
    let Some(rig) = rig() else { return };
    // pbxgate on the rig registers the Stasis application: one at a time.
    let _one_at_a_time = CALLS.lock().await;
    let b = Bench::start(&rig).await;
    // Not in the UCM's default permissions.
    let r = b.ask("listRingGroup", json!({})).await;
    assert_eq!(r["status"], -47, "{r}");
    let rg = b.srv.login(&b.c, "rg", "pw2").await.unwrap();
    let r = call(&b.srv, &b.c, &rg, "listRingGroup", json!({})).await;
    assert_eq!(r["status"], 0, "{r}");
    let list = &r["response"];
    assert_eq!(list["total_item"], 1, "{list}");
    assert_eq!(
        list["ringgroup"][0],
        json!({"extension": "6400", "ringgroup_name": "Rig sales", "strategy": "ringall", "members": "1000,1001"})
    );
    // The permission is for ring groups only: the rest stays open to both.
    let r = call(&b.srv, &b.c, &rg, "listDepartment", json!({})).await;
    assert_eq!(r["status"], 0, "{r}");
    b.srv.stop().await;
}

#[tokio::test]
async fn groups_and_departments_page_and_sort_as_described() {
    let Some(rig) = rig() else { return };
    // pbxgate on the rig registers the Stasis application: one at a time.
    let _one_at_a_time = CALLS.lock().await;
    let b = Bench::start(&rig).await;
    // Everything, in the file's order.
    let all = b.ok("listExtensionGroup", json!({})).await;
    assert_eq!(
        column(&all, "extension_group", "group_id"),
        ["frontdesk", "rooms", "backoffice"]
    );
    // Repeated members lines are one list.
    assert_eq!(all["extension_group"][1]["members"], "1097,1098,1099");
    assert_eq!(
        (all["total_item"].clone(), all["total_page"].clone()),
        (json!(3), json!(1))
    );

    // As the UCM's own GUI asks: sidx=group_name, sord, pages of 2.
    let p = |page: u64| json!({"sidx": "group_name", "sord": "desc", "item_num": 2, "page": page});
    let one = b.ok("listExtensionGroup", p(1)).await;
    assert_eq!(
        column(&one, "extension_group", "group_name"),
        ["Rooms", "Front desk"]
    );
    assert_eq!(
        (
            one["total_item"].clone(),
            one["total_page"].clone(),
            one["page"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    let two = b.ok("listExtensionGroup", p(2)).await;
    assert_eq!(
        column(&two, "extension_group", "group_name"),
        ["Back office"]
    );
    assert_eq!(two["page"], 2);
    let asc = b
        .ok(
            "listExtensionGroup",
            json!({"sidx": "group_name", "sord": "asc", "options": "group_name,members"}),
        )
        .await;
    assert_eq!(
        column(&asc, "extension_group", "group_name"),
        ["Back office", "Front desk", "Rooms"]
    );
    assert_eq!(
        asc["extension_group"][0],
        json!({"group_name": "Back office", "members": "1002"})
    );
    // Past the last page: an empty page, the totals still right.
    let past = b.ok("listExtensionGroup", p(3)).await;
    assert_eq!(past["extension_group"], json!([]));
    assert_eq!(past["total_item"], 3);

    let deps = b
        .ok(
            "listDepartment",
            json!({"sidx": "department_name", "sord": "desc"}),
        )
        .await;
    assert_eq!(
        deps["department"],
        json!([
            {"department_id": "support", "department_name": "Support", "members": "1002"},
            {"department_id": "sales", "department_name": "Sales", "members": "1000,1001"},
        ])
    );

    // Bad paging, before Asterisk is asked.
    for (params, status) in [
        (json!({"page": 0}), -15),
        (json!({"item_num": "x"}), -15),
        (json!({"item_num": -2}), -15),
        (json!({"sidx": {"a": 1}}), -1),
        (json!({"options": ["a"]}), -1),
    ] {
        for action in [
            "listExtensionGroup",
            "listDepartment",
            "listQueue",
            "listInboundRoute",
        ] {
            let r = b.ask(action, params.clone()).await;
            assert_eq!(r["status"], status, "{action} {params}: {r}");
        }
    }
    b.srv.stop().await;
}

#[tokio::test]
async fn routes_are_the_extensions_of_the_described_contexts() {
    let Some(rig) = rig() else { return };
    // pbxgate on the rig registers the Stasis application: one at a time.
    let _one_at_a_time = CALLS.lock().await;
    let b = Bench::start(&rig).await;
    let inbound = b.ok("listInboundRoute", json!({})).await;
    assert_eq!(
        inbound["inbound_route"],
        json!([
            {"inbound_rt_index": "1", "did_pattern_match": "5556000",
             "destination": "Goto(rig-queue,s,1)", "context": "ext-did"},
            {"inbound_rt_index": "2", "did_pattern_match": "5556400",
             "destination": "Goto(rig-ringgroup,s,1)", "context": "ext-did"},
            {"inbound_rt_index": "3", "did_pattern_match": "5557000",
             "destination": "Goto(rig-ivr,s,1)", "context": "ext-did"},
            {"inbound_rt_index": "4", "did_pattern_match": "_55501XX",
             "destination": "Goto(ext-local,10${EXTEN:-2},1)", "context": "ext-did"},
            {"inbound_rt_index": "5", "did_pattern_match": "_X.",
             "destination": "Goto(ext-local,1000,1)", "context": "ext-did"},
        ]),
        "{inbound}"
    );
    let page2 = b
        .ok(
            "listInboundRoute",
            json!({"item_num": 1, "page": 4, "options": "did_pattern_match"}),
        )
        .await;
    assert_eq!(
        page2["inbound_route"],
        json!([{"did_pattern_match": "_55501XX"}])
    );
    assert_eq!(
        (page2["total_item"].clone(), page2["total_page"].clone()),
        (json!(5), json!(5))
    );

    let outbound = b.ok("listOutboundRoute", json!({})).await;
    assert_eq!(
        outbound["outbound_route"],
        json!([{"outbound_rt_index": "1", "outbound_rt_name": "outbound-route/_X.",
                "pattern": "_X.", "trunk_name": "trunk", "context": "outbound-route"}]),
        "{outbound}"
    );
    b.srv.stop().await;
}

#[tokio::test]
async fn without_asterisk_directory_lists_say_so() {
    let db = dbs().await.remove(0);
    let c = client(None);
    // No [asterisk] at all, then an AMI nobody answers.
    for asterisk in [
        "",
        "[asterisk]\nami_address = \"127.0.0.1:9\"\nami_secret = \"x\"\n",
    ] {
        let srv = Server::start(
            &db,
            &format!("[https_api]\npassword = \"pw\"\nallow = [\"listRingGroup\"]\n{asterisk}"),
        )
        .await;
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        for (action, params) in [
            ("listQueue", json!({})),
            ("getQueue", json!({"queue": "6000"})),
            ("listRingGroup", json!({})),
            ("listExtensionGroup", json!({})),
            ("listDepartment", json!({})),
            ("listInboundRoute", json!({})),
            ("listOutboundRoute", json!({})),
        ] {
            let r = call(&srv, &c, &cookie, action, params).await;
            assert_eq!(r["status"], -7, "{asterisk:?} {action}: {r}");
            assert!(r["response"]["error_msg"].is_string(), "{r}");
        }
        // Parameters are still checked first.
        let r = call(&srv, &c, &cookie, "getQueue", json!({})).await;
        assert_eq!(r["status"], -1, "{r}");
        let r = call(&srv, &c, &cookie, "listQueue", json!({"page": 0})).await;
        assert_eq!(r["status"], -15, "{r}");
        srv.stop().await;
    }
}

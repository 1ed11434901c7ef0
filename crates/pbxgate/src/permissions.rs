//! Which `/api` actions an API user may call (`-47` otherwise), configured
//! per user with `allow` and `deny` lists of action or group names over the
//! UCM's default: everything except the lists newer UCM firmware keeps
//! behind a permission (`listRingGroup`, `listDigitalTrunk`, …) and the
//! clear-text secrets of `getSIPAccount` (`secrets`).
//!
//! Session actions (`challenge`, `login`, `logout`, `getSystemStatus`,
//! `getSystemGeneralStatus`) are open to every user; `acceptCall` and
//! `refuseCall` follow the user's Call Control switch.

use std::collections::BTreeSet;
use std::sync::Arc;

/// Groups that `allow`/`deny` may name, with their actions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("cdr", vec!["cdrapi", "cdrExport"]),
        ("recording", vec!["recapi"]),
        ("pms", vec!["pmsapi"]),
        ("call", ucm::actions::CHANNEL.to_vec()),
        ("directory", ucm::actions::DIRECTORY.to_vec()),
        ("secrets", vec![SECRETS]),
    ]
}

/// Not an action: seeing passwords in `getSIPAccount`'s answer.
pub const SECRETS: &str = "secrets";

/// Not in a user's default permissions (UCM 1.0.33.30 answered -47 to these
/// until permission was granted; secrets are ours to protect).
pub const RESTRICTED: &[&str] = &["listRingGroup", "listDigitalTrunk", SECRETS];

/// Every action (and pseudo-action) permissions speak of.
fn catalog() -> Vec<&'static str> {
    groups().into_iter().flat_map(|(_, a)| a).collect()
}

/// A user's permitted actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions(Arc<BTreeSet<&'static str>>);

impl Default for Permissions {
    fn default() -> Self {
        Permissions(Arc::new(
            catalog()
                .into_iter()
                .filter(|a| !RESTRICTED.contains(a))
                .collect(),
        ))
    }
}

impl Permissions {
    /// Everything (the admin interface acting for an admin).
    pub fn all() -> Self {
        Permissions(Arc::new(catalog().into_iter().collect()))
    }

    /// The default, then `allow`, then `deny`; names are actions, groups or
    /// `all`. An unknown name is an error naming its position.
    pub fn resolve(allow: &[String], deny: &[String]) -> Result<Self, (bool, usize, String)> {
        let mut set: BTreeSet<&'static str> = (*Permissions::default().0).clone();
        let expand = |name: &str| -> Option<Vec<&'static str>> {
            if name == "all" {
                return Some(catalog());
            }
            if let Some((_, actions)) = groups().into_iter().find(|(g, _)| *g == name) {
                return Some(actions);
            }
            catalog().into_iter().find(|a| *a == name).map(|a| vec![a])
        };
        for (deny_list, list) in [(false, allow), (true, deny)] {
            for (i, name) in list.iter().enumerate() {
                let Some(actions) = expand(name.trim()) else {
                    return Err((
                        deny_list,
                        i,
                        format!(
                            "\"{}\" is not an action or a group (all, cdr, recording, pms, call, directory, secrets, or an action name such as listRingGroup)",
                            name.escape_debug()
                        ),
                    ));
                };
                for a in actions {
                    if deny_list {
                        set.remove(a);
                    } else {
                        set.insert(a);
                    }
                }
            }
        }
        Ok(Permissions(Arc::new(set)))
    }

    /// Whether the user may call `action` (actions outside the catalog are
    /// not governed here).
    pub fn may(&self, action: &str) -> bool {
        self.0.contains(action) || !catalog().contains(&action)
    }

    /// Whether clear-text secrets may be shown.
    pub fn secrets(&self) -> bool {
        self.0.contains(SECRETS)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_default_is_the_ucms_api_user() {
        let p = Permissions::default();
        for a in [
            "cdrapi",
            "recapi",
            "pmsapi",
            "listAccount",
            "Hangup",
            "listQueue",
        ] {
            assert!(p.may(a), "{a}");
        }
        assert!(!p.may("listRingGroup"));
        assert!(!p.may("listDigitalTrunk"));
        assert!(!p.secrets());
        // Outside the catalog: not governed here.
        assert!(p.may("login") && p.may("acceptCall"));
    }

    #[test]
    fn allow_and_deny_take_groups_and_actions() {
        let p = Permissions::resolve(&s(&["listRingGroup", "secrets"]), &s(&["call", "recapi"]))
            .unwrap();
        assert!(p.may("listRingGroup") && p.secrets());
        assert!(!p.may("Hangup") && !p.may("dialOutbound") && !p.may("recapi"));
        assert!(p.may("cdrapi"));
        let none = Permissions::resolve(&[], &s(&["all"])).unwrap();
        assert!(!none.may("cdrapi") && !none.may("listAccount"));
        assert!(none.may("getSystemStatus"));
        let e = Permissions::resolve(&s(&["cdrapi", "listEverything"]), &[]).unwrap_err();
        assert_eq!((e.0, e.1), (false, 1));
        assert!(e.2.contains("listEverything"));
        assert!(Permissions::resolve(&[], &s(&["nope"])).unwrap_err().0);
    }
}

//! The CDR record of a UCM630X: 43 fields, all strings, in the order the UCM
//! emits them (spec §4.6). The first 32 are common to the UCM62xx/6510/630x;
//! the last 11 appeared on UCM63xx firmware.

/// Field names, in emission order.
pub const FIELDS: [&str; 43] = [
    "AcctId",
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
    "channel_ext",
    "dstchannel_ext",
    "service",
    "caller_name",
    "recordfiles",
    "dstanswer",
    "chanext",
    "dstchanext",
    "session",
    "action_owner",
    "action_type",
    "src_trunk_name",
    "dst_trunk_name",
    "nat_call",
    "nat_call_peer",
    "video_call",
    "gdms_unique_code",
    "gds_call",
    "gsc_call",
    "wave_src_seqid",
    "wave_dst_seqid",
    "device_info",
    "device_info_peer",
    "recordfiles_desc",
];

/// One CDR as the UCM reports it. Values are kept exactly as they will be
/// emitted; a field the PBX cannot know is an empty string, as on a UCM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrRecord {
    values: Vec<String>,
}

impl CdrRecord {
    pub fn new() -> Self {
        CdrRecord {
            values: vec![String::new(); FIELDS.len()],
        }
    }

    /// Builds a record from values in [`FIELDS`] order; missing ones are empty.
    pub fn from_values(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values.into_iter().take(FIELDS.len()).collect();
        values.resize(FIELDS.len(), String::new());
        CdrRecord { values }
    }

    pub fn index_of(field: &str) -> Option<usize> {
        FIELDS.iter().position(|f| *f == field)
    }

    /// The value of `field`; unknown names read as empty.
    pub fn get(&self, field: &str) -> &str {
        Self::index_of(field)
            .and_then(|i| self.values.get(i))
            .map_or("", String::as_str)
    }

    /// Sets `field`; unknown names are ignored (returns false).
    pub fn set(&mut self, field: &str, value: impl Into<String>) -> bool {
        match Self::index_of(field).and_then(|i| self.values.get_mut(i)) {
            Some(slot) => {
                *slot = value.into();
                true
            }
            None => false,
        }
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// `(name, value)` pairs in emission order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        FIELDS
            .iter()
            .copied()
            .zip(self.values.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forty_three_fields_in_ucm_order() {
        assert_eq!(FIELDS.len(), 43);
        assert_eq!(FIELDS[0], "AcctId");
        assert_eq!(FIELDS[31], "dst_trunk_name");
        assert_eq!(FIELDS[42], "recordfiles_desc");
        let mut unique = FIELDS.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 43);
    }

    #[test]
    fn get_and_set_by_name() {
        let mut r = CdrRecord::new();
        assert!(r.set("src", "1001"));
        assert!(!r.set("nonsense", "x"));
        assert_eq!(r.get("src"), "1001");
        assert_eq!(r.get("dst"), "");
        assert_eq!(r.get("nonsense"), "");
        assert_eq!(r.fields().count(), 43);
        let r2 = CdrRecord::from_values(r.values().iter().cloned());
        assert_eq!(r, r2);
    }
}

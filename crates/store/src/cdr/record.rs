//! A CDR as the ingest hands it to the store.

/// A CDR ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCdr {
    /// Stable identity of the Asterisk CDR: the same whichever way it arrives.
    pub dedupe_key: String,
    /// Leg start, UTC milliseconds.
    pub start_ms: i64,
    /// Start of the call (session) the leg belongs to, UTC milliseconds: the
    /// same for every leg of a session (cdrapi orders and pages entries by it).
    pub call_ms: i64,
    /// Leg end, UTC milliseconds (`timeFilterType=End`).
    pub end_ms: i64,
    /// The UCM record; its `AcctId` is assigned by the store.
    pub record: ucm::cdr::CdrRecord,
}

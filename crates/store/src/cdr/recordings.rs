//! CDRs that name recordings, for `pbxgate recordings check`.
//!
//! Walks the CDR table by keyset pages of legs through the same page query as
//! `cdrExport` (so no SQL of its own: nothing new to plan or index), keeping
//! only the legs whose `recordfiles` is set.

use super::query::{CdrFilter, PageKey};
use super::read::next_legs;
use crate::connection::Store;
use crate::error::Error;

/// Position of `recordfiles` and `start` among the UCM values.
const RECORDFILES: usize = 23;
const START: usize = 10;

/// A CDR leg with recordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCdr {
    pub acctid: i64,
    /// Local start time as the CDR shows it.
    pub start: String,
    /// The raw value: names relative to the monitor folder, each ending in `@`.
    pub recordfiles: String,
}

impl RecordedCdr {
    /// The names in `recordfiles`.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.recordfiles.split('@').filter(|s| !s.is_empty())
    }
}

/// Where a walk over recorded CDRs stands.
#[derive(Debug, Clone, Default)]
pub struct RecordedCursor {
    after: Option<PageKey>,
    done: bool,
}

impl RecordedCursor {
    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl Store {
    /// The next recorded CDRs after `cursor`, reading `legs` legs (recorded
    /// or not) per round trip; empty when the walk is done. Every leg is seen
    /// once, in `cdrapi` entry order.
    pub async fn recorded_cdrs(
        &self,
        cursor: &mut RecordedCursor,
        legs: u32,
    ) -> Result<Vec<RecordedCdr>, Error> {
        let filter = CdrFilter::default();
        let mut out = Vec::new();
        while out.is_empty() && !cursor.done {
            let (page, last) = next_legs(self, &filter, &mut cursor.after, legs).await?;
            cursor.done = last;
            for leg in &page.legs()? {
                if leg.values[RECORDFILES].is_empty() {
                    continue;
                }
                out.push(RecordedCdr {
                    acctid: leg.values[0]
                        .parse()
                        .map_err(|_| Error::Corrupt("AcctId"))?,
                    start: leg.values[START].to_owned(),
                    recordfiles: leg.values[RECORDFILES].to_owned(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn positions_are_where_the_record_has_them() {
        assert_eq!(ucm::cdr::FIELDS[super::RECORDFILES], "recordfiles");
        assert_eq!(ucm::cdr::FIELDS[super::START], "start");
    }
}

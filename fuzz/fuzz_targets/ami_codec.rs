//! The AMI frame decoder: any bytes, split anywhere, never panic, never hold
//! more than the limit plus one read, and decode the same whatever the split.
#![no_main]

use asterisk::ami::codec::{Decoder, Frame};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);

    let mut whole = Decoder::new(LIMIT);
    whole.extend(bytes);
    let expected: Vec<Frame> = std::iter::from_fn(|| whole.next_frame()).collect();

    let mut pieces = Decoder::new(LIMIT);
    let mut got = Vec::new();
    for piece in bytes.chunks(chunk) {
        pieces.extend(piece);
        while let Some(f) = pieces.next_frame() {
            got.push(f);
        }
        assert!(pieces.buffered() <= LIMIT + chunk + 4, "buffer grew past the limit");
    }
    // Oversized frames may be reported with different byte counts; messages must match.
    let msgs = |v: &[Frame]| -> Vec<Frame> {
        v.iter().filter(|f| !matches!(f, Frame::Oversized { .. })).cloned().collect()
    };
    assert_eq!(msgs(&got), msgs(&expected));
});

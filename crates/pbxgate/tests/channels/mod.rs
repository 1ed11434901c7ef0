//! End-to-end tests of `channels` (on the rig).

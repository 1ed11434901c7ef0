//! End-to-end tests of `pms` (on the rig).

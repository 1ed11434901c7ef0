//! End-to-end tests of `legacy` (on the rig).

//! End-to-end tests of `callcontrol` (on the rig).

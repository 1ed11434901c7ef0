//! End-to-end tests of `websockify` (on the rig).

//! Asterisk Manager Interface.

mod client;
pub mod codec;

pub use client::{Ami, AmiConfig, Reply};
pub use codec::{Frame, Message};

//! The two ways Slack reaches us. Both end in [`crate::pipeline::Engine::receive`].

pub mod http;
pub mod socket;

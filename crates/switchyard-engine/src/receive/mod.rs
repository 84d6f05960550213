//! The ways work reaches us: Slack over HTTP or Socket Mode, and apps' own HTTP routes. All
//! end in the inbox, through [`crate::pipeline::Engine::receive`] or `accept`.

pub mod http;
pub mod routes;
pub mod socket;

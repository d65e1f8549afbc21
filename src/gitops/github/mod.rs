//! The GitHub backend: pull requests through the REST API and the webhook
//! receiver's checks. Built up under issue 12; what is here is complete in
//! itself and tested.

pub mod api;
pub mod backend;
pub mod signature;

//! Shared code of the IPCS processes: the admin HTTP endpoint
//! (`admin_http`), the wire formats (HSMAP over UDP and the
//! backend Ethernet frame), the arithmetic the servers perform, the
//! registry's line protocol and its client side, the duration parser and
//! flag grammar of the command lines (`cli`), the one module of unsafe
//! system calls, and logging set-up. The load balancer, the servers, `calc`
//! and `loadgen` all speak through exactly this one implementation.

pub mod admin_http;
pub mod arith;
pub mod backoff;
pub mod cli;
pub mod duration;
pub mod logging;
pub mod registry_auth;
pub mod registry_client;
pub mod registry_proto;
pub mod sys;
pub mod wire;

pub use arith::Op;

//! The LB tier's address plan and keepalived configuration live in the
//! `ipcs-lb-node` crate (lbnode/src/vrrp.rs), which runs each node in every
//! deployment; the topology uses the same ones.

pub use ipcs_lb_node::vrrp::*;

//! One node of the LB tier: `ipcs-lb` and keepalived in the node's network
//! namespace, supervised so the node holds the tier's virtual address only
//! while its LB answers, and comes back as a standby when its LB dies.
//!
//! * [`vrrp`]: the tier's address plan and the keepalived configuration.
//! * [`core`]: the supervisor's decisions (sans-I/O).
//! * [`run`]: the processes, the probe and the down file.

#![forbid(unsafe_code)]

pub mod core;
pub mod run;
pub mod vrrp;

//! `calc`, the IPCS client: how a person (or a script) uses the service.

pub mod expr;

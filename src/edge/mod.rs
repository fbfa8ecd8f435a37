//! The SIP edge's I/O: TLS/TCP/UDP transports, transactions and call records around the pure decisions in
//! `crate::sip`.

pub mod asterisk;
pub mod framing;
pub mod server;
pub mod tls;

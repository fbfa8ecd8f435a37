//! Emulators of the peers wabridge talks to and tests cannot reach: Meta's Cloud API (Graph API and webhook
//! delivery), Meta's side of WhatsApp calls over SIP ([`sip`], with SIPp as the business's PBX) and a Bitrix24
//! portal with its OAuth server. They speak the documented wire formats (`shared/reference/`) exactly.
//!
//! This crate does not depend on `wabridge`: its wire codecs ([`form`] for Bitrix24's bracketed forms,
//! [`signature`] for `X-Hub-Signature-256`, [`sip::text`] and [`sip::digest`] for SIP) are its own, written
//! from the references, so a bug in the product's codec cannot round-trip unseen through the same code on this
//! side. The product uses it only as a dev-dependency (its tests); the benchmarks in `crates/bench` and the
//! demo in `crates/demo` use it too.

pub mod bitrix;
pub mod form;
pub mod graph;
pub mod graph_health;
pub mod graph_limits;
pub mod graph_media;
pub mod graph_messages;
pub mod graph_templates;
pub mod graph_validate;
pub mod meta;
pub mod payloads;
pub mod signature;
pub mod sip;
pub mod token;

/// Serves `app` on `listener` until the returned sender fires (or is dropped): the start/stop pattern every
/// emulator here shares.
pub(crate) fn spawn_server(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (stop, task)
}

//! Emulators of the peers we cannot reach from tests: Meta's Cloud API (and later Bitrix24).
//! They speak the documented wire formats (`shared/reference/`) exactly.

pub mod bitrix;
pub mod graph;
pub mod graph_limits;
pub mod graph_media;
pub mod graph_messages;
pub mod graph_templates;
pub mod graph_validate;
pub mod meta;
pub mod payloads;

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

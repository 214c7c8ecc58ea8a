//! The connection loop every emulator runs. It is hyper directly rather than `axum::serve` so a
//! fault can close a connection without writing any response (a "dropped connection").

use crate::faults::DropConnection;
use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

/// A running server; dropping it does not stop the server, [`ServerHandle::shutdown`] does.
#[derive(Debug)]
pub struct ServerHandle {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// Stops accepting, closes open connections and waits for the loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, crate::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Bind { addr, source })
}

/// Serves `router` on `listener` until shut down.
pub fn spawn(listener: TcpListener, router: Router) -> Result<ServerHandle, crate::Error> {
    let addr = listener
        .local_addr()
        .map_err(|e| crate::Error::Config(format!("listener has no address: {e}")))?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let router = router.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let router = router.clone();
                            async move {
                                let resp = router.oneshot(req.map(Body::new)).await;
                                match resp {
                                    Ok(r) if r.extensions().get::<DropConnection>().is_some() => {
                                        // hyper closes the connection when the service fails.
                                        Err(Dropped)
                                    }
                                    Ok(r) => Ok(r),
                                    Err(never) => match never {},
                                }
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                // Reap finished connections so the set does not grow without bound.
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.shutdown().await;
    });
    Ok(ServerHandle { addr, stop, task })
}

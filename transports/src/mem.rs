//! `mem`: an in-process transport. A listener registers a name in the factory's hub; a
//! connection to that name yields streams backed by in-memory pipes (`tokio::io::duplex`).
//!
//! Both ends run in one process, so connections report `shared_filesystem`: the engine may
//! then copy files by path instead of streaming their bytes, and the receiver takes the
//! sender's file list from the connection's [`LocalShelf`] instead of decoding a copy of it.
//! Owns nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arsync_core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, ListenConfig, Listener, LocalShelf,
    StreamPair, TransportError, TransportFactory,
};
use tokio::sync::mpsc;

/// Bytes buffered in each direction of a stream.
const PIPE_BUFFER: usize = 1 << 20;
/// Streams a connection may have open.
const MAX_STREAMS: u32 = 1024;

type Hub = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<MemConnection>>>>;

/// The in-process transport factory. Clones share one hub of listeners.
#[derive(Debug, Clone, Default)]
pub struct Mem {
    hub: Hub,
}

fn caps() -> Capabilities {
    Capabilities::single_stream()
        .with_max_streams(MAX_STREAMS)
        .with_shared_filesystem(true)
}

impl TransportFactory for Mem {
    fn name(&self) -> &str {
        "mem"
    }

    fn capabilities(&self) -> Capabilities {
        caps()
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        _auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let tx = self
                .hub
                .lock()
                .map_err(|_| TransportError::Closed)?
                .get(&endpoint.host)
                .cloned()
                .ok_or_else(|| TransportError::Connect {
                    endpoint: endpoint.host.clone(),
                    reason: "no in-process listener of that name".into(),
                })?;
            let (ours, theirs) = MemConnection::pair();
            tx.send(theirs).map_err(|_| TransportError::Connect {
                endpoint: endpoint.host.clone(),
                reason: "listener closed".into(),
            })?;
            Ok(Box::new(ours) as Box<dyn Connection>)
        })
    }

    fn listen<'a>(
        &'a self,
        config: &'a ListenConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Listener>, TransportError>> {
        Box::pin(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut hub = self.hub.lock().map_err(|_| TransportError::Closed)?;
            if hub.get(&config.bind).is_some_and(|t| !t.is_closed()) {
                return Err(TransportError::Connect {
                    endpoint: config.bind.clone(),
                    reason: "name already in use".into(),
                });
            }
            hub.insert(config.bind.clone(), tx);
            Ok(Box::new(MemListener {
                name: config.bind.clone(),
                incoming: tokio::sync::Mutex::new(rx),
            }) as Box<dyn Listener>)
        })
    }
}

/// A listener on a hub name.
#[derive(Debug)]
pub struct MemListener {
    name: String,
    incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<MemConnection>>,
}

impl Listener for MemListener {
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let c = self
                .incoming
                .lock()
                .await
                .recv()
                .await
                .ok_or(TransportError::Closed)?;
            Ok(Box::new(c) as Box<dyn Connection>)
        })
    }

    fn local_addr(&self) -> String {
        format!("mem:{}", self.name)
    }
}

/// One end of an in-process connection.
#[derive(Debug)]
pub struct MemConnection {
    to_peer: Mutex<Option<mpsc::UnboundedSender<StreamPair>>>,
    from_peer: tokio::sync::Mutex<mpsc::UnboundedReceiver<StreamPair>>,
    /// Issue 18: the sender's file list, handed to the receiver beside its frames (one
    /// shelf for both ends).
    shelf: Arc<LocalShelf>,
}

impl MemConnection {
    /// Two connected ends.
    pub fn pair() -> (MemConnection, MemConnection) {
        let (a_tx, a_rx) = mpsc::unbounded_channel();
        let (b_tx, b_rx) = mpsc::unbounded_channel();
        let shelf = Arc::new(LocalShelf::default());
        (
            MemConnection {
                to_peer: Mutex::new(Some(b_tx)),
                from_peer: tokio::sync::Mutex::new(a_rx),
                shelf: shelf.clone(),
            },
            MemConnection {
                to_peer: Mutex::new(Some(a_tx)),
                from_peer: tokio::sync::Mutex::new(b_rx),
                shelf,
            },
        )
    }
}

impl Connection for MemConnection {
    fn open_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            let (a, b) = tokio::io::duplex(PIPE_BUFFER);
            let (ar, aw) = tokio::io::split(a);
            let (br, bw) = tokio::io::split(b);
            let guard = self.to_peer.lock().map_err(|_| TransportError::Closed)?;
            let tx = guard.as_ref().ok_or(TransportError::Closed)?;
            tx.send(StreamPair {
                send: Box::new(bw),
                recv: Box::new(br),
            })
            .map_err(|_| TransportError::Closed)?;
            Ok(StreamPair {
                send: Box::new(aw),
                recv: Box::new(ar),
            })
        })
    }

    fn accept_stream(&self) -> BoxFuture<'_, Result<StreamPair, TransportError>> {
        Box::pin(async move {
            self.from_peer
                .lock()
                .await
                .recv()
                .await
                .ok_or(TransportError::Closed)
        })
    }

    fn capabilities(&self) -> Capabilities {
        caps()
    }

    fn local_shelf(&self) -> Option<Arc<LocalShelf>> {
        Some(self.shelf.clone())
    }

    fn close(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if let Ok(mut g) = self.to_peer.lock() {
                g.take();
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn listen_connect_and_stream() {
        let mem = Mem::default();
        let l = mem.listen(&ListenConfig::bind("x")).await.unwrap();
        let c = mem
            .connect(&Endpoint::host("x"), &AuthConfig::default())
            .await
            .unwrap();
        let s = l.accept().await.unwrap();
        let mut a = c.open_stream().await.unwrap();
        let mut b = s.accept_stream().await.unwrap();
        a.send.write_all(b"ping").await.unwrap();
        a.send.shutdown().await.unwrap();
        let mut got = Vec::new();
        b.recv.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        assert!(c.capabilities().shared_filesystem);
        // A second listener under the same name is refused while the first lives.
        assert!(mem.listen(&ListenConfig::bind("x")).await.is_err());
        // Unknown names are a connect error, not a hang.
        assert!(mem
            .connect(&Endpoint::host("nope"), &AuthConfig::default())
            .await
            .is_err());
        c.close().await.unwrap();
        assert!(c.open_stream().await.is_err());
    }
}

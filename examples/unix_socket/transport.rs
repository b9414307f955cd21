//! The example plugin's transport: arsync's transport boundary over Unix-domain sockets. It owns
//! dialing and binding socket paths and turning a connected socket into a one-stream
//! [`Connection`]; it does not run a sync (`examples/unix_socket_transport.rs` does) and is not
//! built into arsync. Included by the example and by the tests (`tests/conformance.rs` runs the
//! conformance suite against it, as a plugin author would) with `#[path]`, so the code is one.

use arsync::core::transport::{
    AuthConfig, BoxFuture, Capabilities, Connection, Endpoint, ListenConfig, Listener,
    TransportError, TransportFactory,
};
use arsync::transports::pipe::PipeConnection;
use tokio::net::{UnixListener, UnixStream};

/// The plugin: registered as `unix`; endpoints and listen addresses are socket paths.
#[derive(Debug, Default)]
pub struct UnixSocketTransport;

impl TransportFactory for UnixSocketTransport {
    fn name(&self) -> &str {
        "unix"
    }

    /// One stream, not encrypted, no shared filesystem claimed (the socket could lead into
    /// another mount namespace), so the engine sends file data as frames.
    fn capabilities(&self) -> Capabilities {
        Capabilities::single_stream()
    }

    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        _auth: &'a AuthConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let s = UnixStream::connect(&endpoint.host)
                .await
                .map_err(|e| TransportError::unreachable(&endpoint.host, "connecting", e))?;
            Ok(Box::new(one_stream(s)) as Box<dyn Connection>)
        })
    }

    fn listen<'a>(
        &'a self,
        config: &'a ListenConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Listener>, TransportError>> {
        Box::pin(async move {
            let l = UnixListener::bind(&config.bind)?;
            Ok(Box::new(SocketListener(l, config.bind.clone())) as Box<dyn Listener>)
        })
    }
}

/// A connected socket is one stream: the crate's `PipeConnection` adapts any read and write
/// halves to a one-stream [`Connection`].
fn one_stream(s: UnixStream) -> PipeConnection {
    let (r, w) = s.into_split();
    PipeConnection::new(r, w)
}

/// A bound socket path, accepting peers.
#[derive(Debug)]
struct SocketListener(UnixListener, String);

impl Listener for SocketListener {
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let (s, _) = self.0.accept().await?;
            Ok(Box::new(one_stream(s)) as Box<dyn Connection>)
        })
    }

    fn local_addr(&self) -> String {
        format!("unix:{}", self.1)
    }
}

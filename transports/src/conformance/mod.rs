//! The transport conformance suite (feature `conformance`): what every transport must do at the
//! boundary the engine relies on, checked over a real connected pair of the transport under
//! test, so that a transport — built in or a plugin — that breaks the contract fails a named
//! case instead of hanging or corrupting a sync later.
//!
//! A test supplies a [`PairMaker`]: something that makes a fresh [`ConnectedPair`] (the side
//! that connected, which opens streams, and the side that accepted). Each [`Case`] makes the
//! pairs it needs and returns a [`ConformanceError`] saying which step failed and why. Every
//! wait on the transport is bounded ([`STEP_LIMIT`] per step, [`CASE_LIMIT`] per case), so a
//! broken transport fails, never hangs.
//!
//! A plugin's tests run every case, one `#[test]` each, with one line:
//!
//! ```ignore
//! // Cargo.toml: [dev-dependencies] arsync-transports = { version = "…", features = ["conformance"] }
//! async fn pair() -> Result<ConnectedPair, TransportError> { /* listen, connect, accept */ }
//! arsync_transports::conformance_tests!(pair);
//! ```
//!
//! The cases: [`streams`] (open and accept both ways, bytes both ways large and in many small
//! writes, end-of-stream, close drains, as many streams as claimed, the claims that can be
//! observed) and [`sync`] (a tree through the engine's sender and receiver, either side
//! opening). This module owns the harness; it implements no transport and starts no peer
//! (making the pair — a server, an sshd, a certificate — is the caller's part).

pub mod streams;
pub mod sync;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use arsync_core::transport::{BoxFuture, Connection, TransportError};
use arsync_core::SyncError;

pub use sync::{sync_over_pair, Opener, SyncOutcome};

/// The longest any single step (a stream opened, a message read, a close) may take.
pub const STEP_LIMIT: Duration = Duration::from_secs(30);
/// The longest a whole case may take.
pub const CASE_LIMIT: Duration = Duration::from_secs(120);

/// Two connected ends of the transport under test, and whatever must outlive them.
pub struct ConnectedPair {
    /// The side that connected: it opens streams (and, on a one-stream transport, its
    /// `open_stream` and `accept_stream` both yield the one stream).
    pub client: Box<dyn Connection>,
    /// The side that accepted the connection: it accepts the client's streams.
    pub server: Box<dyn Connection>,
    server_opens: bool,
    /// Dropped after both ends (fields drop in order).
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for ConnectedPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectedPair")
            .field("client", &self.client)
            .field("server", &self.server)
            .field("server_opens", &self.server_opens)
            .finish_non_exhaustive()
    }
}

impl ConnectedPair {
    /// A pair whose accepting side can open streams too (the client then accepts them).
    pub fn new(client: Box<dyn Connection>, server: Box<dyn Connection>) -> Self {
        ConnectedPair {
            client,
            server,
            server_opens: true,
            _guard: None,
        }
    }

    /// The accepting side only accepts: its `open_stream` must fail (not wait), and the
    /// cases open every stream from the client (ssh-pool's lane server is such a side).
    pub fn server_only_accepts(mut self) -> Self {
        self.server_opens = false;
        self
    }

    /// Keep `guard` (a listener, a server endpoint, a temporary directory, a child process)
    /// alive as long as the pair, and drop it after both ends.
    pub fn keep(mut self, guard: impl Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    /// Whether the accepting side can open streams.
    pub fn server_opens(&self) -> bool {
        self.server_opens
    }
}

/// Makes fresh connected pairs of the transport under test. Any
/// `Fn() -> impl Future<Output = Result<ConnectedPair, TransportError>>` is one (an `async fn`
/// with no arguments, a closure returning an `async move` block).
pub trait PairMaker: Send + Sync {
    /// A new pair, connected, nothing opened on it yet.
    fn make_pair(&self) -> BoxFuture<'_, Result<ConnectedPair, TransportError>>;
}

impl<F, Fut> PairMaker for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<ConnectedPair, TransportError>> + Send + 'static,
{
    fn make_pair(&self) -> BoxFuture<'_, Result<ConnectedPair, TransportError>> {
        Box::pin(self())
    }
}

/// How a case failed: which step, and the transport's (or the engine's) error, a wait that did
/// not end, or a broken promise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConformanceError {
    /// The transport returned an error where the contract says it must not.
    #[error("{step}: {source}")]
    Transport {
        /// What the case was doing.
        step: String,
        /// The transport's error.
        source: TransportError,
    },
    /// A stream's read or write failed.
    #[error("{step}: {source}")]
    Io {
        /// What the case was doing.
        step: String,
        /// The stream's error.
        source: io::Error,
    },
    /// The engine's sync over the pair failed.
    #[error("{step}: {source}")]
    Sync {
        /// What the case was doing.
        step: String,
        /// The engine's error.
        source: SyncError,
    },
    /// A wait on the transport did not end in time.
    #[error("{step}: no result within {after:?}")]
    TimedOut {
        /// What the case was waiting for.
        step: String,
        /// How long it waited.
        after: Duration,
    },
    /// The transport did something the contract forbids (changed bytes, a capability it claims
    /// but does not have, a stream that never ends).
    #[error("{0}")]
    Violation(String),
}

/// An error of a step, given the step's name.
pub(crate) trait AtStep<T> {
    /// The error as a [`ConformanceError`] of `step`.
    fn at(self, step: &str) -> Result<T, ConformanceError>;
}

impl<T> AtStep<T> for Result<T, TransportError> {
    fn at(self, step: &str) -> Result<T, ConformanceError> {
        self.map_err(|source| ConformanceError::Transport {
            step: step.to_owned(),
            source,
        })
    }
}

impl<T> AtStep<T> for Result<T, io::Error> {
    fn at(self, step: &str) -> Result<T, ConformanceError> {
        self.map_err(|source| ConformanceError::Io {
            step: step.to_owned(),
            source,
        })
    }
}

impl<T> AtStep<T> for Result<T, SyncError> {
    fn at(self, step: &str) -> Result<T, ConformanceError> {
        self.map_err(|source| ConformanceError::Sync {
            step: step.to_owned(),
            source,
        })
    }
}

impl<T> AtStep<T> for Result<T, ConformanceError> {
    fn at(self, _step: &str) -> Result<T, ConformanceError> {
        self
    }
}

/// Run `fut` (a step named `step`) for at most `limit`.
pub(crate) async fn bounded_for<T, R: AtStep<T>>(
    step: &str,
    limit: Duration,
    fut: impl Future<Output = R>,
) -> Result<T, ConformanceError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.at(step),
        Err(_) => Err(ConformanceError::TimedOut {
            step: step.to_owned(),
            after: limit,
        }),
    }
}

/// Run `fut` (a step named `step`) for at most [`STEP_LIMIT`].
pub(crate) async fn bounded<T, R: AtStep<T>>(
    step: &str,
    fut: impl Future<Output = R>,
) -> Result<T, ConformanceError> {
    bounded_for(step, STEP_LIMIT, fut).await
}

/// A fresh pair from `maker`, bounded.
pub(crate) async fn fresh_pair(maker: &dyn PairMaker) -> Result<ConnectedPair, ConformanceError> {
    bounded("making a connected pair", maker.make_pair()).await
}

/// Fail with a [`ConformanceError::Violation`] unless `ok`.
pub(crate) fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), ConformanceError> {
    if ok {
        Ok(())
    } else {
        Err(ConformanceError::Violation(what()))
    }
}

macro_rules! cases {
    ($($(#[$doc:meta])* $variant:ident => $module:ident::$function:ident,)*) => {
        /// One case of the suite.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Case {
            $($(#[$doc])* $variant,)*
        }

        impl Case {
            /// Every case, in the order they are best read.
            pub const ALL: &'static [Case] = &[$(Case::$variant,)*];

            /// The case's name (its function's).
            pub fn name(self) -> &'static str {
                match self {
                    $(Case::$variant => stringify!($function),)*
                }
            }

            /// Run the case against pairs from `maker`, bounded by [`CASE_LIMIT`].
            pub async fn run(self, maker: &dyn PairMaker) -> Result<(), ConformanceError> {
                let body: BoxFuture<'_, Result<(), ConformanceError>> = match self {
                    $(Case::$variant => Box::pin($module::$function(maker)),)*
                };
                bounded_for(self.name(), CASE_LIMIT, body).await
            }
        }
    };
}

cases! {
    /// A stream opened by either side is accepted by the other, bytes both ways.
    OpenAndAccept => streams::open_and_accept,
    /// 8 MiB each way on one stream, both directions at once.
    LargeTransfer => streams::large_transfer,
    /// Thousands of small flushed writes each way arrive whole and in order.
    ManySmallWrites => streams::many_small_writes,
    /// Shutting down a send half ends the peer's reads; the other direction still works.
    EndOfStream => streams::end_of_stream,
    /// Data written before `close` (by either side) all arrives.
    CloseDrains => streams::close_drains,
    /// As many streams as both ends claim, at once; on a one-stream transport a second open
    /// fails instead of waiting.
    ClaimedStreams => streams::claimed_streams,
    /// What can be observed of the capabilities is true: streams, the shared filesystem,
    /// path statistics.
    HonestCapabilities => streams::honest_capabilities,
    /// A tree through the engine, the client receiving (a pull; a local sync).
    SyncClientReceives => sync::sync_client_receives,
    /// A tree through the engine, the client sending (a push).
    SyncClientSends => sync::sync_client_sends,
}

/// Every case against `maker`, in order: each case's name and outcome.
pub async fn run_all(maker: &dyn PairMaker) -> Vec<(Case, Result<(), ConformanceError>)> {
    let mut out = Vec::new();
    for &case in Case::ALL {
        out.push((case, case.run(maker).await));
    }
    out
}

/// Run `fut` on a fresh multi-threaded runtime from a plain (non-async) test, bounded by
/// [`CASE_LIMIT`]; the runtime is then shut down without waiting long for stuck blocking
/// threads, so a broken transport cannot hang the test binary.
pub fn block_on<T>(
    fut: impl Future<Output = Result<T, ConformanceError>>,
) -> Result<T, ConformanceError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ConformanceError::Io {
            step: "starting a runtime".into(),
            source,
        })?;
    let out = rt.block_on(bounded_for("the case", CASE_LIMIT, fut));
    rt.shutdown_timeout(Duration::from_secs(5));
    out
}

/// Run `case` against `maker` as a test: panics with the failure and its chain of causes.
pub fn run_as_test(maker: &dyn PairMaker, case: Case) {
    if let Err(e) = block_on(case.run(maker)) {
        panic!("conformance case {} failed: {}", case.name(), chain(&e));
    }
}

/// `e` and its sources, `: `-joined (each only where it adds to the one before).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        next = s.source();
    }
    text
}

/// One `#[test]` per conformance case, each running against pairs from `$maker` (an
/// expression implementing [`conformance::PairMaker`](crate::conformance::PairMaker),
/// evaluated in each test). Put it in a module of its own per transport:
/// `mod quic { arsync_transports::conformance_tests!(super::quic_pair); }`.
#[macro_export]
macro_rules! conformance_tests {
    ($maker:expr) => {
        $crate::conformance_tests!(@each $maker;
            open_and_accept => OpenAndAccept,
            large_transfer => LargeTransfer,
            many_small_writes => ManySmallWrites,
            end_of_stream => EndOfStream,
            close_drains => CloseDrains,
            claimed_streams => ClaimedStreams,
            honest_capabilities => HonestCapabilities,
            sync_client_receives => SyncClientReceives,
            sync_client_sends => SyncClientSends,
        );
    };
    (@each $maker:expr; $($test:ident => $case:ident,)*) => {
        $(
            #[test]
            fn $test() {
                $crate::conformance::run_as_test(&$maker, $crate::conformance::Case::$case);
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_macro_lists_every_case() {
        // `conformance_tests!` names the cases itself (a macro cannot read `Case::ALL`): the two
        // lists must not drift apart.
        let source = include_str!("mod.rs");
        let start = source
            .find("(@each $maker;\n")
            .expect("the macro's list of cases");
        let len = source[start..]
            .find("(@each $maker:expr;")
            .expect("the macro's second arm");
        let list = &source[start..start + len];
        for case in Case::ALL {
            assert!(
                list.contains(&format!("{} => ", case.name())),
                "conformance_tests! lacks {}",
                case.name()
            );
        }
        assert_eq!(
            list.matches(" => ").count(),
            Case::ALL.len(),
            "conformance_tests! lists a case Case::ALL does not"
        );
    }
}

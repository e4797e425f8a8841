//! A UDP socket wrapper that tells when quinn has let go of the socket.
//!
//! quinn closes its socket from a background driver some time after the last endpoint handle
//! is dropped, with no way to wait for it. Shutdown waits for [`SocketReleased`] instead, so
//! that a node restarted on the same port right after `shutdown()` can bind it again.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};
use tokio::sync::oneshot;
use tracing::debug;

/// Requested size of the UDP send and receive buffers.
const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// Completes once the socket is closed.
pub(crate) type SocketReleased = oneshot::Receiver<()>;

/// Binds `addr` and wraps the socket for quinn; the receiver completes when it is closed.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<(Arc<dyn AsyncUdpSocket>, SocketReleased)> {
    let socket = std::net::UdpSocket::bind(addr)?;
    enlarge_buffers(&socket);
    let inner = TokioRuntime.wrap_udp_socket(socket)?;
    let (tx, rx) = oneshot::channel();
    let tracked = TrackedSocket {
        inner,
        _released: ReleaseSignal(Some(tx)),
    };
    Ok((Arc::new(tracked), rx))
}

/// Asks for larger socket buffers than the usual 208 KiB default: bursts of full-size
/// datagrams overflow it and the resulting drops throttle throughput through congestion
/// control. The kernel caps the request at `net.core.{r,w}mem_max`; failure is not fatal.
fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let sized = UdpSocketState::new(socket.into()).and_then(|state| {
        state.set_recv_buffer_size(socket.into(), SOCKET_BUFFER_BYTES)?;
        state.set_send_buffer_size(socket.into(), SOCKET_BUFFER_BYTES)
    });
    if let Err(e) = sized {
        debug!("cannot enlarge UDP socket buffers: {e}");
    }
}

/// Fields drop in order: the inner socket first, then the signal.
struct TrackedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    _released: ReleaseSignal,
}

struct ReleaseSignal(Option<oneshot::Sender<()>>);

impl Drop for ReleaseSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl fmt::Debug for TrackedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl AsyncUdpSocket for TrackedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(TrackedPoller {
            inner: self.inner.clone().create_io_poller(),
            _socket: self,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Keeps the tracked socket alive as long as quinn polls through it.
struct TrackedPoller {
    inner: Pin<Box<dyn UdpPoller>>,
    _socket: Arc<TrackedSocket>,
}

impl fmt::Debug for TrackedPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl UdpPoller for TrackedPoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner.as_mut().poll_writable(cx)
    }
}

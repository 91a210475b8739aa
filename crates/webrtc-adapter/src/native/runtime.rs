//! A tokio runtime for the `webrtc` crate whose UDP sockets get large kernel buffers.
//!
//! The kernel's default UDP receive buffer (208 KiB) overflows under a data-channel burst and
//! SCTP then stalls on retransmission timers; with 4 MiB buffers throughput is steady
//! (docs: reference/webrtc-notes.md, pitfall 4). The `webrtc` crate binds its sockets itself
//! and hands each one to [`Runtime::wrap_udp_socket`], which is where this wrapper sets them.
//!
//! It also caps the datagrams one GSO send may batch ([`MAX_GSO_SEGMENTS`]): `webrtc` 0.21.1
//! batches up to 65,535 bytes per GSO run, but a UDP/IPv4 datagram carries at most 65,507, so a run
//! of 56 SCTP packets of 1,170 bytes (65,520) fails with `EMSGSIZE`, is rebuilt the same on every
//! retransmission and the association never recovers: the link stays up and carries nothing. Found
//! by `cargo xtask bench-flood` (issue 14).

use std::future::Future;
use std::io;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tracing::Instrument;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// Most datagrams one GSO send may carry. A run is at most this many datagrams no larger than its
/// first, so 50 keeps it within a UDP/IPv4 datagram's 65,507 bytes for datagrams up to 1,310 bytes
/// (this stack sends SCTP packets of at most ~1,200 bytes plus DTLS overhead; 1,170 measured), where
/// the crate's own limit (64 datagrams, 65,535 bytes) let 56 x 1,170 = 65,520 bytes through.
pub const MAX_GSO_SEGMENTS: usize = 50;

/// A UDP socket that reports at most [`MAX_GSO_SEGMENTS`] GSO segments, and is otherwise the
/// socket it wraps.
#[derive(Debug)]
struct GsoCapped(Arc<dyn AsyncUdpSocket>);

impl AsyncUdpSocket for GsoCapped {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.0.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_recv(cx, bufs, meta)
    }

    fn max_gso_segments(&self) -> usize {
        self.0.max_gso_segments().min(MAX_GSO_SEGMENTS)
    }

    fn max_gro_segments(&self) -> usize {
        self.0.max_gro_segments()
    }
}

/// [`TokioRuntime`] with `SO_RCVBUF` / `SO_SNDBUF` set on every UDP socket.
#[derive(Debug)]
pub struct BufferedRuntime {
    inner: TokioRuntime,
    socket_buffer_size: usize,
}

impl BufferedRuntime {
    /// A runtime that asks for `socket_buffer_size` bytes of kernel buffer in each direction
    /// (the kernel caps it at `net.core.rmem_max` / `wmem_max`; 0 leaves the defaults).
    pub fn new(socket_buffer_size: usize) -> Self {
        Self {
            inner: TokioRuntime,
            socket_buffer_size,
        }
    }
}

impl Runtime for BufferedRuntime {
    /// Spawns in the caller's span, so a connection driver's logs carry its link's span.
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(Box::pin(future.in_current_span()))
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner
            .spawn_reactor(reactor_pool_size, Box::pin(future.in_current_span()))
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        if self.socket_buffer_size > 0 {
            let sock = socket2::SockRef::from(&socket);
            // A smaller buffer than asked for is not an error: the connection still works.
            if let Err(err) = sock.set_recv_buffer_size(self.socket_buffer_size) {
                tracing::debug!(%err, "could not set SO_RCVBUF");
            }
            if let Err(err) = sock.set_send_buffer_size(self.socket_buffer_size) {
                tracing::debug!(%err, "could not set SO_SNDBUF");
            }
        }
        let socket = self.inner.wrap_udp_socket(socket)?;
        Ok(Arc::new(GsoCapped(socket)))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (buffered sockets)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wrapped_sockets_get_the_requested_buffers() {
        let rt = BufferedRuntime::new(1 << 20);
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let probe = std_sock.try_clone().expect("clone");
        let _wrapped = rt.wrap_udp_socket(std_sock).expect("wrap");
        let sock = socket2::SockRef::from(&probe);
        // Linux reports double the requested size (bookkeeping overhead); other systems
        // report it as set. Either way it is well above the 208 KiB default.
        assert!(sock.recv_buffer_size().expect("rcvbuf") >= 1 << 20);
        assert!(sock.send_buffer_size().expect("sndbuf") >= 1 << 20);
    }

    #[tokio::test]
    async fn wrapped_sockets_never_batch_more_than_a_datagram_holds() {
        let rt = BufferedRuntime::new(0);
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let wrapped = rt.wrap_udp_socket(std_sock).expect("wrap");
        let segments = wrapped.max_gso_segments();
        assert!(segments <= MAX_GSO_SEGMENTS, "{segments}");
        // The largest run the `webrtc` crate would build of 1,170-byte SCTP packets (what the flood
        // benchmark saw fail at 56 of them) fits one UDP/IPv4 datagram.
        assert!(segments * 1_170 <= 65_507);
        let mut buf = [0u8; 8];
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sent = wrapped
            .send_to(b"datagram", peer.local_addr().expect("addr"))
            .await
            .expect("send");
        assert_eq!(sent, 8);
        let (len, _) = peer.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"datagram");
    }
}

//! A tokio runtime for the `webrtc` crate whose UDP sockets get large kernel buffers.
//!
//! The kernel's default UDP receive buffer (208 KiB) overflows under a data-channel burst and
//! SCTP then stalls on retransmission timers; with 4 MiB buffers throughput is steady
//! (docs: reference/webrtc-notes.md, pitfall 4). The `webrtc` crate binds its sockets itself
//! and hands each one to [`Runtime::wrap_udp_socket`], which is where this wrapper sets them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

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
        self.inner.wrap_udp_socket(socket)
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
}

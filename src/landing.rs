//! Each thread's landing buffer: where a connection with nothing pending reads, a client's next
//! request (`server::h1`) or the first bytes of fal's answer (`upstream::h1`) alike.
//!
//! The same memory for every connection of the thread, so it stays in the CPU's cache; what
//! arrives is copied into a right-sized buffer of the request's (or answer's) own, which the
//! allocator serves from memory it just had back. A buffer kept by each connection is written
//! hundreds of requests after its last use at hundreds of connections, one cache miss after
//! another (bench/README.md, item 21). The buffer is borrowed only for one read and the copy,
//! never across an await, so both sides can share it.

use bytes::BytesMut;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, ReadBuf};

/// The size of the landing buffer: a read that fills it may have more behind it.
pub const SIZE: usize = 16 * 1024;

thread_local! {
    static LANDING: RefCell<Box<[u8]>> = RefCell::new(vec![0; SIZE].into_boxed_slice());
}

/// Reads what `io` has ready (at most [`SIZE`] bytes) through this thread's landing buffer;
/// gives a right-sized copy, empty at the connection's end.
pub fn poll_read<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    cx: &mut Context<'_>,
) -> Poll<io::Result<BytesMut>> {
    LANDING.with_borrow_mut(|landing| {
        let mut read = ReadBuf::new(landing);
        ready!(Pin::new(io).poll_read(cx, &mut read))?;
        Poll::Ready(Ok(BytesMut::from(read.filled())))
    })
}

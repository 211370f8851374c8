//! Buffered reading of SMTP lines, dot-terminated data and BDAT chunks over any byte
//! stream (TCP, TLS, unix socket, or `tokio::io::duplex` in tests).
//!
//! Every read is bounded by a *deadline for the whole unit*, not only by a timeout per
//! `read()`: a client that trickles one byte every few seconds (slowloris) would reset a
//! per-read timer forever. A command line must be complete within the command timeout;
//! message data (DATA, BDAT) must keep arriving within the data timeout *and* at an
//! average of at least [`DataDeadline::min_rate`] bytes per second (Postfix's
//! `smtpd_per_request_deadline` with `smtpd_min_data_rate`).

use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

pub use mailveil_smtp::wire::{DataReader, stuff};

/// A byte stream that a session can run over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection.
    Eof,
    /// The unit (line, message, chunk) was not complete by its deadline.
    Timeout,
    /// A line longer than the limit (it was consumed and dropped).
    TooLong,
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => f.write_str("connection closed"),
            ReadError::Timeout => f.write_str("timeout"),
            ReadError::TooLong => f.write_str("line too long"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The result of reading a message body: the bytes, or how many were dropped over the limit.
pub struct Body {
    /// The message (complete unless `too_big`).
    pub bytes: Vec<u8>,
    /// The limit was passed; `bytes` is incomplete and must not be delivered.
    pub too_big: bool,
}

/// The time limit of message data: each read must bring bytes within `idle`, and the
/// whole transfer may take `idle` plus one second per `min_rate` bytes received.
#[derive(Debug, Clone, Copy)]
pub struct DataDeadline {
    /// Longest wait for the next bytes (the data timeout).
    pub idle: Duration,
    /// Average bytes per second the client must keep up; 0: no rate floor.
    pub min_rate: u64,
}

impl DataDeadline {
    /// When the transfer that started at `started` and has brought `received` bytes so
    /// far must have brought more.
    fn at(&self, started: Instant, received: usize) -> Instant {
        let next_read = Instant::now() + self.idle;
        if self.min_rate == 0 {
            return next_read;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        next_read.min(started + self.idle + earned)
    }
}

/// A stream plus a read buffer. Bytes the peer pipelined after a command stay buffered
/// for the next read.
pub struct Conn {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
    pos: usize,
    /// Replies held back while the peer's pipelined commands are still being answered.
    queued: Vec<u8>,
}

const READ_CHUNK: usize = 64 * 1024;

/// Most reply bytes held back for one write (a client pipelining thousands of short
/// commands gets its replies in pieces of this size).
const MAX_QUEUED: usize = 16 * 1024;

impl Conn {
    /// Wraps a stream.
    pub fn new(stream: Box<dyn Io>) -> Self {
        Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            queued: Vec::new(),
        }
    }

    /// Gives the stream back (for the TLS handshake). Buffered input is dropped, and so
    /// is a held-back reply (write the last reply with [`Conn::write`] first).
    pub fn into_stream(self) -> Box<dyn Io> {
        self.stream
    }

    /// Reads more bytes into the buffer, giving up at `deadline`. Cancel-safe
    /// (`read_buf` appends only what was read), so a session can stop waiting for a
    /// command when the server shuts down. Returns how many bytes came.
    async fn fill(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_CHUNK);
        match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Err(e)) => Err(ReadError::Io(e)),
            Ok(Ok(0)) => Err(ReadError::Eof),
            Ok(Ok(n)) => Ok(n),
        }
    }

    /// One line, CRLF (or LF) included, complete within `timeout` however the bytes
    /// trickle in. A line over `max` bytes is consumed and reported as `TooLong` (its
    /// bytes are dropped as they come, so it costs at most `max` of memory).
    pub async fn read_line(&mut self, max: usize, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + timeout;
        let mut overflow = false;
        loop {
            let pending = &self.buf[self.pos..];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line = pending[..=i].to_vec();
                self.pos += i + 1;
                return if overflow || line.len() > max {
                    Err(ReadError::TooLong)
                } else {
                    Ok(line)
                };
            }
            if pending.len() > max {
                overflow = true;
                self.pos = self.buf.len();
            }
            self.fill(deadline).await?;
        }
    }

    /// A dot-terminated message body, unstuffed, without the final `.` line. Past `max`
    /// bytes the rest is read and dropped so the session stays in step.
    pub async fn read_data(&mut self, max: usize, limit: DataDeadline) -> Result<Body, ReadError> {
        let started = Instant::now();
        let mut received = 0usize;
        let mut reader = DataReader::new();
        let mut bytes = Vec::new();
        let mut too_big = false;
        loop {
            let (used, done) = reader.feed(&self.buf[self.pos..], &mut bytes);
            self.pos += used;
            if bytes.len() > max {
                too_big = true;
                bytes.clear();
            }
            if done {
                if too_big {
                    bytes = Vec::new();
                }
                return Ok(Body { bytes, too_big });
            }
            received += self.fill(limit.at(started, received)).await?;
        }
    }

    /// Exactly `n` bytes (a BDAT chunk), appended to `out` unless `discard`.
    pub async fn read_chunk(
        &mut self,
        mut n: usize,
        out: &mut Vec<u8>,
        discard: bool,
        limit: DataDeadline,
    ) -> Result<(), ReadError> {
        let started = Instant::now();
        let mut received = 0usize;
        loop {
            let take = n.min(self.buf.len() - self.pos);
            if !discard {
                out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            }
            self.pos += take;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            received += self.fill(limit.at(started, received)).await?;
        }
    }

    /// Whether nothing is buffered and the peer has sent nothing and not closed: looks
    /// once without waiting (a pending read means a silent, open peer).
    pub fn quiet(&mut self) -> bool {
        if self.pos < self.buf.len() {
            return false;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut probe = tokio::io::ReadBuf::new(&mut byte);
        std::pin::Pin::new(&mut self.stream)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }

    /// A reply to a command: held back while the peer has pipelined another whole
    /// command line that is already here, written (with what was held back) once none
    /// is: one write for a pipelined group of commands, as Postfix's smtpd answers
    /// (RFC 2920). Never held while the peer waits for it: it has sent nothing more.
    pub async fn reply(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        let line_waiting = self.buf[self.pos..].contains(&b'\n');
        if line_waiting && self.queued.len() + bytes.len() <= MAX_QUEUED {
            self.queued.extend_from_slice(bytes);
            return Ok(());
        }
        self.write(bytes, timeout).await
    }

    /// Writes (after any reply held back) and flushes.
    pub async fn write(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        if self.queued.is_empty() {
            return self.write_parts(&[bytes], timeout).await;
        }
        // Replies are short: one buffer, one write on any stream (TLS has no writev).
        let mut queued = std::mem::take(&mut self.queued);
        queued.extend_from_slice(bytes);
        self.write_parts(&[&queued], timeout).await
    }

    /// Writes `parts` one after the other and flushes: one vectored write (`writev`) for
    /// all of them where the stream takes it, so a message goes out without being copied
    /// next to its terminating line.
    pub async fn write_parts(&mut self, parts: &[&[u8]], timeout: Duration) -> io::Result<()> {
        let write = async {
            if let [one] = parts {
                // One buffer: a plain write (`send`), no vector to set up.
                self.stream.write_all(one).await?;
                return self.stream.flush().await;
            }
            let mut slices: Vec<io::IoSlice<'_>> =
                parts.iter().map(|p| io::IoSlice::new(p)).collect();
            let mut rest = &mut slices[..];
            // Drops leading empty parts: a vectored write of nothing returns 0, read as
            // WriteZero below.
            io::IoSlice::advance_slices(&mut rest, 0);
            while !rest.is_empty() {
                let n = self.stream.write_vectored(rest).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                io::IoSlice::advance_slices(&mut rest, n);
            }
            self.stream.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")))
    }

    /// Shuts the write side down (best effort), after any reply held back.
    pub async fn shutdown(&mut self) {
        if !self.queued.is_empty() {
            let _ = self.write(b"", Duration::from_secs(5)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stream.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Duration = Duration::from_secs(5);
    const D: DataDeadline = DataDeadline {
        idle: T,
        min_rate: 0,
    };

    #[tokio::test]
    async fn lines_data_and_pipelined_rest() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut c = Conn::new(Box::new(a));
        tokio::spawn(async move {
            b.write_all(b"DATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
                .await
                .unwrap();
            b.write_all(&[b'x'; 300]).await.unwrap();
            b.write_all(b"\r\nNOOP\r\n").await.unwrap();
        });
        assert_eq!(c.read_line(100, T).await.unwrap(), b"DATA\r\n");
        let body = c.read_data(1000, D).await.unwrap();
        assert_eq!(body.bytes, b"Subject: x\r\n\r\n.dot\r\n");
        assert!(!body.too_big);
        assert_eq!(c.read_line(100, T).await.unwrap(), b"QUIT\r\n");
        assert!(matches!(c.read_line(100, T).await, Err(ReadError::TooLong)));
        assert_eq!(c.read_line(100, T).await.unwrap(), b"NOOP\r\n");
        assert!(matches!(c.read_line(100, T).await, Err(ReadError::Eof)));
    }

    #[tokio::test]
    async fn the_first_line_of_data_is_unstuffed_and_a_dot_at_once_ends_an_empty_message() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(Box::new(a));
        tokio::spawn(async move {
            b.write_all(b"..x\r\n.\r\n.\r\nQUIT\r\n").await.unwrap();
        });
        assert_eq!(c.read_data(1000, D).await.unwrap().bytes, b".x\r\n");
        assert_eq!(c.read_data(1000, D).await.unwrap().bytes, b"");
        assert_eq!(c.read_line(100, T).await.unwrap(), b"QUIT\r\n");
    }

    #[tokio::test]
    async fn only_crlf_dot_crlf_ends_the_data() {
        // SMTP smuggling: a bare LF before the dot must not end the message.
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(Box::new(a));
        tokio::spawn(async move {
            b.write_all(b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil@x>\r\n.\r\n")
                .await
                .unwrap();
        });
        let body = c.read_data(1000, D).await.unwrap();
        assert_eq!(
            body.bytes,
            b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil@x>\r\n"
        );
    }

    #[tokio::test]
    async fn data_over_the_limit_is_drained() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(Box::new(a));
        tokio::spawn(async move {
            for _ in 0..100 {
                b.write_all(&[b'y'; 998]).await.unwrap();
                b.write_all(b"\r\n").await.unwrap();
            }
            b.write_all(b".\r\nRSET\r\n").await.unwrap();
        });
        let body = c.read_data(10_000, D).await.unwrap();
        assert!(body.too_big);
        assert_eq!(c.read_line(100, T).await.unwrap(), b"RSET\r\n");
    }

    #[tokio::test]
    async fn parts_are_written_whole_and_in_order_through_short_writes() {
        // A 7-byte pipe takes a few bytes per write: every part must still go out whole.
        let (a, mut b) = tokio::io::duplex(7);
        let mut c = Conn::new(Box::new(a));
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        c.write_parts(&[b"", &big, b"", b".\r\n"], T).await.unwrap();
        c.shutdown().await;
        drop(c);
        let mut want = big.clone();
        want.extend_from_slice(b".\r\n");
        assert_eq!(reader.await.unwrap(), want);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_line_is_cut_at_the_line_deadline() {
        // One byte every second never trips a 5 s per-read timer; the line deadline does.
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(Box::new(a));
        tokio::spawn(async move {
            for _ in 0..60 {
                if b.write_all(b"N").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = Instant::now();
        assert!(matches!(c.read_line(100, T).await, Err(ReadError::Timeout)));
        assert_eq!(started.elapsed().as_secs(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn trickled_data_is_cut_by_the_rate_floor() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(Box::new(a));
        tokio::spawn(async move {
            for _ in 0..1000 {
                if b.write_all(b"y").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let limit = DataDeadline {
            idle: T,
            min_rate: 10,
        };
        let started = Instant::now();
        assert!(matches!(
            c.read_data(1 << 20, limit).await,
            Err(ReadError::Timeout)
        ));
        // 5 s of grace plus a tenth of a second per byte: cut after about 6 s.
        let took = started.elapsed().as_secs();
        assert!((5..=7).contains(&took), "{took}");
        // Without the floor only the per-read timer counts, and one byte a second passes.
        let (a, mut b) = tokio::io::duplex(1024);
        let mut c = Conn::new(Box::new(a));
        tokio::spawn(async move {
            for _ in 0..20 {
                b.write_all(b"y").await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            b.write_all(b"\r\n.\r\n").await.unwrap();
        });
        assert_eq!(c.read_data(1 << 20, D).await.unwrap().bytes.len(), 22);
    }
}

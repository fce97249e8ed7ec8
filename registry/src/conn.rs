//! One client connection's socket and unsent output, as the reactor sees
//! it (its protocol state is the [`Session`](crate::session::Session)'s).
//! The output is bounded by `--max-output-bytes`, and the session's input
//! line by `--max-line-bytes`, so a connection costs a fixed amount of
//! memory whatever its peer does.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

use crate::session::OutputFull;

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    out: Vec<u8>,
    max_output: usize,
}

impl Conn {
    pub fn new(stream: TcpStream, max_output: usize) -> Conn {
        Conn {
            stream,
            out: Vec::new(),
            max_output,
        }
    }

    /// Queues `bytes` for sending. When the queue would pass the bound, it
    /// first tries to hand what it holds to the kernel; if the peer is not
    /// reading, the bytes are refused and the caller closes the connection.
    pub fn queue(&mut self, bytes: &[u8]) -> Result<(), OutputFull> {
        if self.out.len() + bytes.len() > self.max_output {
            // A write error surfaces again on the next flush; here it only
            // means the bytes cannot go out.
            let _ = self.flush();
            if self.out.len() + bytes.len() > self.max_output {
                return Err(OutputFull {
                    pending: self.out.len(),
                });
            }
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes queued output until it is all sent or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut sent = 0;
        let result = loop {
            if sent == self.out.len() {
                break Ok(());
            }
            match self.stream.write(&self.out[sent..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.out.drain(..sent);
        if self.out.is_empty() && self.out.capacity() > 4096 {
            // A burst (say, a few lists) should not pin memory for good.
            self.out = Vec::new();
        }
        result
    }

    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Last words before closing: sends what is queued if the socket takes it
    /// now, signals end of stream, and reads away (a bounded amount of) what
    /// the peer already sent, so the close is a FIN the peer can read the
    /// queued error before, rather than a reset.
    pub fn finish(&mut self) {
        let _ = self.flush();
        let _ = self.stream.shutdown(Shutdown::Write);
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match self.stream.read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

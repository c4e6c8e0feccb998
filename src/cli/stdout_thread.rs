//! Standard output written by a thread of its own, for a command that prints a lot:
//! `status` of a million partitions writes 800 MB of JSON, and the writes were a sixth of
//! the thread that formats it. Here that thread fills a buffer and hands it over whole; the
//! writer thread writes it while the next is formatted. The bytes and their order are
//! those one buffered writer would write.

use std::io::{self, Write};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

/// The size of a buffer handed over.
const CHUNK: usize = 1 << 20;
/// Buffers waiting for the writer at most: what it holds is bounded, whatever is printed.
const WAITING: usize = 4;

pub struct StdoutThread {
    buf: Vec<u8>,
    send: Option<SyncSender<Vec<u8>>>,
    writer: Option<JoinHandle<io::Result<()>>>,
}

impl StdoutThread {
    pub fn start() -> StdoutThread {
        let (send, chunks) = sync_channel::<Vec<u8>>(WAITING);
        let writer = std::thread::spawn(move || {
            let mut out = io::stdout().lock();
            for chunk in chunks {
                out.write_all(&chunk)?;
                out.flush()?;
            }
            Ok(())
        });
        StdoutThread {
            buf: Vec::with_capacity(CHUNK),
            send: Some(send),
            writer: Some(writer),
        }
    }

    /// Hands what is buffered to the writer, if anything.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let sent = self.send.as_ref().map(|s| s.send(chunk).is_ok());
        match sent {
            Some(true) => Ok(()),
            // The writer stopped: its error says why.
            _ => Err(self.stop().err().unwrap_or_else(stopped)),
        }
    }

    /// The buffer to append to directly: a writer over a `Vec` is inlined where it is
    /// used, where one over this thread is a call per write. [`StdoutThread::appended`]
    /// after.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Hands the buffer over once it holds a chunk.
    pub fn appended(&mut self) -> io::Result<()> {
        match self.buf.len() >= CHUNK {
            true => self.hand_over(),
            false => Ok(()),
        }
    }

    /// Waits for the writer to have written everything; returns its error, if any.
    fn stop(&mut self) -> io::Result<()> {
        self.send = None;
        match self.writer.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(written)) => written,
            Some(Err(_)) => Err(stopped()),
        }
    }

    /// Writes what is left, and waits until it is written.
    pub fn finish(mut self) -> io::Result<()> {
        self.hand_over()?;
        self.stop()
    }
}

fn stopped() -> io::Error {
    io::Error::other("the thread writing standard output stopped")
}

impl Write for StdoutThread {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.write_all(b)?;
        Ok(b.len())
    }

    /// All of `b` at once (the default loops over `write`).
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(b);
        self.appended()
    }

    /// Hands the buffer over (it is written soon, in order), without waiting for it.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl Drop for StdoutThread {
    /// What was handed over is written before the program goes on (an error ended it
    /// early: what was printed so far still shows).
    fn drop(&mut self) {
        let _ = self.hand_over();
        let _ = self.stop();
    }
}

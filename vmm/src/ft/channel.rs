//! The two ends of the supervision channel ([`super::wire`]): a child
//! writes frames to its stdout (a pipe or a Unix socket the supervisor
//! holds the other end of) and reads the supervisor's on its stdin; the
//! supervisor waits on all its children's descriptors at once with
//! `poll(2)` and takes frames out of what arrived.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::wire::{self, ChannelError, Frame, MAX_PAYLOAD};

/// Errors of reading frames.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot read the supervision channel")]
    Io(#[source] std::io::Error),
    #[error("the peer sent a bad frame")]
    Frame(#[source] ChannelError),
}

/// A child's end: frames to the supervisor (clones share the stream).
#[derive(Clone)]
pub struct ChildChannel {
    out: std::sync::Arc<std::sync::Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for ChildChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildChannel").finish_non_exhaustive()
    }
}

impl ChildChannel {
    /// Frames go to `out` (the child's stdout).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        ChildChannel { out: std::sync::Arc::new(std::sync::Mutex::new(out)) }
    }

    /// Sends one frame.
    ///
    /// # Errors
    ///
    /// The write failed: the supervisor is gone.
    pub fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        let mut buf = Vec::new();
        wire::encode(frame, &mut buf);
        let mut out = self.out.lock().map_err(|_| std::io::Error::other("a sender panicked"))?;
        out.write_all(&buf)?;
        out.flush()
    }

    /// Sends `bytes` of guest output, in frames of at most [`MAX_PAYLOAD`].
    ///
    /// # Errors
    ///
    /// The write failed: the supervisor is gone.
    pub fn output(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        for chunk in bytes.chunks(MAX_PAYLOAD) {
            self.send(&Frame::Output { bytes: chunk.to_vec() })?;
        }
        Ok(())
    }
}

/// The supervisor's end of one child: frames out of what arrived.
#[derive(Debug)]
pub struct FrameReader {
    file: File,
    buf: Vec<u8>,
}

impl FrameReader {
    /// Reads from `fd`.
    pub fn new(fd: OwnedFd) -> Self {
        FrameReader { file: File::from(fd), buf: Vec::new() }
    }

    /// The descriptor to wait on.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// One read of what is there (call it when [`wait_readable`] says so);
    /// false at the end of the stream (the child is gone).
    ///
    /// # Errors
    ///
    /// The read failed.
    pub fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 64 * 1024];
        match self.file.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The next whole frame that arrived, if any.
    ///
    /// # Errors
    ///
    /// A frame that is not a frame of this protocol (the stream cannot be trusted after it).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ChannelError> {
        match wire::decode(&self.buf) {
            Ok((frame, n)) => {
                self.buf.drain(..n);
                Ok(Some(frame))
            }
            Err(ChannelError::Truncated { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Waits until one of `fds` can be read (or has hung up) or `timeout`
/// passes; says which can.
///
/// # Errors
///
/// `poll` failed (other than being interrupted).
pub fn wait_readable(fds: &[RawFd], timeout: Duration) -> std::io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pollfds` is a live array of `pollfds.len()` pollfd structures
    // that poll only reads and writes the `revents` of.
    let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pollfds.iter().map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0).collect())
}

/// Reads one whole frame from `input`, blocking (a standby on its stdin);
/// `None` at the end of the stream.
///
/// # Errors
///
/// The read failed, or the frame is bad.
pub fn read_frame(input: &mut dyn Read, buf: &mut Vec<u8>) -> Result<Option<Frame>, LinkError> {
    buf.resize(wire::HEADER_LEN, 0);
    match input.read_exact(buf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(LinkError::Io(e)),
    }
    let total = wire::frame_len(buf).map_err(LinkError::Frame)?;
    buf.resize(total, 0);
    input.read_exact(&mut buf[wire::HEADER_LEN..]).map_err(LinkError::Io)?;
    wire::decode(buf).map(|(f, _)| Some(f)).map_err(LinkError::Frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_a_socket_whole_in_order_and_the_end_is_seen() {
        let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        // The writer on a thread of its own: the output is larger than the socket's buffer.
        let writer = std::thread::spawn(move || {
            let mut child = ChildChannel::new(Box::new(w));
            child.send(&Frame::Hello { pid: 1, standby: false }).unwrap();
            child.output(&vec![b'x'; MAX_PAYLOAD + 10]).unwrap();
            child.send(&Frame::End { status: 0 }).unwrap();
        });
        let mut reader = FrameReader::new(OwnedFd::from(r));
        let mut frames = Vec::new();
        loop {
            let ready = wait_readable(&[reader.raw_fd()], Duration::from_secs(5)).unwrap();
            assert!(ready[0], "the socket holds data or has hung up");
            let open = reader.fill().unwrap();
            while let Some(f) = reader.next_frame().unwrap() {
                frames.push(f);
            }
            if !open {
                break;
            }
        }
        writer.join().unwrap();
        let sizes: Vec<usize> = frames
            .iter()
            .filter_map(|f| if let Frame::Output { bytes } = f { Some(bytes.len()) } else { None })
            .collect();
        assert_eq!(sizes, vec![MAX_PAYLOAD, 10], "long output is split across frames");
        assert_eq!(frames.first(), Some(&Frame::Hello { pid: 1, standby: false }));
        assert_eq!(frames.last(), Some(&Frame::End { status: 0 }));
    }

    #[test]
    fn a_blocking_reader_takes_frames_then_sees_the_end() {
        let mut bytes = Vec::new();
        wire::encode(&Frame::Load { seq: 2, path: "p".into() }, &mut bytes);
        let mut input: &[u8] = &bytes;
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut input, &mut buf).unwrap(), Some(Frame::Load { seq: 2, path: "p".into() }));
        assert_eq!(read_frame(&mut input, &mut buf).unwrap(), None);
        let mut junk: &[u8] = b"not a frame at all";
        assert!(matches!(read_frame(&mut junk, &mut buf), Err(LinkError::Frame(ChannelError::BadMagic { .. }))));
        assert_eq!(wait_readable(&[], Duration::from_millis(1)).unwrap(), Vec::<bool>::new());
    }
}

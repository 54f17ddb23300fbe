//! A small Redis client with a deadline on every wait.
//!
//! Used where waiting is the point: portsyncd's start-up reads (before the
//! netlink socket exists), `flood` (its floor writer, and its watcher, which
//! polls a subscriber and pipelined readers without blocking), and the
//! tests. The event loop never uses it; it has [`super::conn::RedisConn`].

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::encode;
use super::reply::{self, Reply};
use super::socket::{self, Transfer};
use crate::engine::runtime::repeat::cut;
use crate::engine::sonic::dbconfig::Address;

/// An owned reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Status(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    fn from_reply(r: &Reply<'_>) -> Value {
        match r {
            Reply::Status(b) => Value::Status(b.to_vec()),
            Reply::Error(e) => Value::Error(String::from_utf8_lossy(e).into_owned()),
            Reply::Int(i) => Value::Int(*i),
            Reply::Bulk(b) => Value::Bulk(b.to_vec()),
            Reply::Nil => Value::Nil,
            Reply::Array(items) => Value::Array(items.iter().map(Value::from_reply).collect()),
        }
    }

    /// Bytes of a bulk or status reply.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) | Value::Status(b) => Some(b),
            _ => None,
        }
    }

    /// Text of a bulk or status reply (lossy: for logs and tests; what is
    /// written on goes by [`as_bytes`](Self::as_bytes)).
    pub fn as_string(&self) -> Option<String> {
        self.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// An integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Items of an array reply (empty for anything else).
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(v) => v,
            _ => &[],
        }
    }

    /// Field/value pairs of an `HGETALL` reply, as they are: SONiC's
    /// tables hold bytes, and what is copied on must stay byte-identical.
    pub fn pairs_bytes(&self) -> Vec<(&[u8], &[u8])> {
        self.items()
            .chunks_exact(2)
            .filter_map(|kv| Some((kv[0].as_bytes()?, kv[1].as_bytes()?)))
            .collect()
    }

    /// Field/value pairs of an `HGETALL` reply, as strings (lossy: for
    /// logs and tests, never for what is written on).
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.items()
            .chunks_exact(2)
            .filter_map(|kv| Some((kv[0].as_string()?, kv[1].as_string()?)))
            .collect()
    }

    /// The error text, if this is an error reply.
    pub fn error(&self) -> Option<&str> {
        match self {
            Value::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a call failed; the connection is not usable after any of these.
#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    Protocol(String),
    /// No complete reply before the deadline.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// A reply larger than the client accepts.
    TooLarge(usize),
    /// Redis answered a command with an error (from the `*_ok` calls).
    Reply {
        command: String,
        error: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Protocol(e) => write!(f, "protocol error: {e}"),
            ClientError::Timeout => f.write_str("timed out waiting for Redis"),
            ClientError::Closed => f.write_str("Redis closed the connection"),
            ClientError::TooLarge(n) => write!(f, "reply larger than {n} bytes"),
            // The error text is Redis's (a Lua error can quote a script).
            ClientError::Reply { command, error } => write!(f, "{command}: {}", cut(error, 200)),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// Replies larger than this are refused (start-up reads are far smaller).
const MAX_REPLY_BYTES: usize = 256 << 20;
/// The receive buffer's first size, and the room a read wants: below it the
/// buffer is compacted or grown before reading.
const IN_BYTES: usize = 64 << 10;
const MIN_ROOM: usize = 16 << 10;

/// A connection with a deadline on every wait.
///
/// Blocking use: [`call`](Self::call), [`pipeline`](Self::pipeline),
/// [`read`](Self::read). Non-blocking use, for a thread that polls several
/// sockets (a pub/sub subscriber, pipelined reads): [`queue`](Self::queue)
/// and [`flush`](Self::flush) commands, and when the socket is readable
/// [`fill`](Self::fill), then take each reply read so far with
/// [`next_reply`](Self::next_reply), borrowed, without allocating.
pub struct Client {
    fd: OwnedFd,
    /// Receive buffer, initialised once; `start..end` is not yet decoded.
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Commands queued and not yet sent.
    out: Vec<u8>,
    timeout: Duration,
}

impl Client {
    /// Connect within `timeout`; every later call also gets `timeout`.
    pub fn connect(addr: &Address, timeout: Duration) -> io::Result<Client> {
        let fd = socket::connect_wait(addr, timeout)?;
        Ok(Client {
            fd,
            inbuf: vec![0; IN_BYTES],
            start: 0,
            end: 0,
            out: Vec::with_capacity(16 << 10),
            timeout,
        })
    }

    /// Connect and `SELECT db`.
    pub fn connect_db(addr: &Address, db: u32, timeout: Duration) -> Result<Client, ClientError> {
        let mut c = Client::connect(addr, timeout)?;
        let r = c.call(&[b"SELECT", db.to_string().as_bytes()])?;
        if let Some(e) = r.error() {
            return Err(ClientError::Protocol(format!("SELECT {db}: {e}")));
        }
        Ok(c)
    }

    /// Send raw, already encoded commands.
    pub fn send_raw(&mut self, mut out: &[u8]) -> Result<(), ClientError> {
        // The deadline is only needed (and only read) when the socket is full.
        let mut deadline = None;
        while !out.is_empty() {
            match socket::send(self.fd.as_raw_fd(), out)? {
                Transfer::Bytes(n) => out = &out[n..],
                Transfer::WouldBlock => {
                    let at = *deadline.get_or_insert_with(|| Instant::now() + self.timeout);
                    self.wait(libc::POLLOUT, at)?;
                }
            }
        }
        Ok(())
    }

    /// Queue one command; [`flush`](Self::flush) sends it.
    pub fn queue(&mut self, args: &[&[u8]]) {
        encode::command(&mut self.out, args);
    }

    /// Send every queued command, waiting (at most the timeout) while the
    /// socket is full. Nothing queued costs nothing.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let out = std::mem::take(&mut self.out);
        let sent = self.send_raw(&out);
        self.out = out;
        self.out.clear();
        sent
    }

    fn wait(&self, events: i16, deadline: Instant) -> Result<(), ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !socket::wait_fd(self.fd.as_raw_fd(), events, left)? {
            return Err(ClientError::Timeout);
        }
        Ok(())
    }

    /// Read what the socket holds now, without waiting; the number of
    /// bytes read (0: nothing was there). A peer that closed is
    /// [`ClientError::Closed`] once everything it sent has been read.
    pub fn fill(&mut self) -> Result<usize, ClientError> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        let mut got = 0;
        loop {
            if self.inbuf.len() - self.end < MIN_ROOM {
                if self.start > 0 {
                    self.inbuf.copy_within(self.start..self.end, 0);
                    (self.start, self.end) = (0, self.end - self.start);
                } else {
                    self.inbuf.resize(self.inbuf.len() * 2, 0);
                }
            }
            let room = self.inbuf.len() - self.end;
            match socket::recv(self.fd.as_raw_fd(), &mut self.inbuf[self.end..])? {
                Transfer::Bytes(0) if got == 0 => return Err(ClientError::Closed),
                Transfer::Bytes(0) | Transfer::WouldBlock => return Ok(got),
                Transfer::Bytes(n) => {
                    self.end += n;
                    got += n;
                    // A short read emptied the socket: no need to ask again.
                    if n < room {
                        return Ok(got);
                    }
                }
            }
        }
    }

    /// The next complete reply already read, borrowing the receive buffer;
    /// `None` until [`fill`](Self::fill) brings more.
    pub fn next_reply(&mut self) -> Result<Option<Reply<'_>>, ClientError> {
        match reply::decode(&self.inbuf[self.start..self.end]) {
            Ok(Some((r, used))) => {
                self.start += used;
                Ok(Some(r))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(ClientError::Protocol(e.0)),
        }
    }

    /// Read one reply.
    pub fn read(&mut self) -> Result<Value, ClientError> {
        self.read_until(Instant::now() + self.timeout)
    }

    /// Read one reply, waiting at most until `deadline`.
    pub fn read_until(&mut self, deadline: Instant) -> Result<Value, ClientError> {
        loop {
            if let Some(r) = self.next_reply()? {
                return Ok(Value::from_reply(&r));
            }
            if self.end - self.start > MAX_REPLY_BYTES {
                return Err(ClientError::TooLarge(MAX_REPLY_BYTES));
            }
            if self.fill()? == 0 {
                self.wait(libc::POLLIN, deadline)?;
            }
        }
    }

    /// One command and its reply (an error reply is a `Value::Error`).
    /// Commands queued before it are sent first; read their replies first.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Value, ClientError> {
        self.queue(args);
        self.flush()?;
        self.read()
    }

    /// Several commands in one write; their replies in order.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Value>, ClientError> {
        for cmd in cmds {
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
            self.queue(&args);
        }
        self.flush()?;
        cmds.iter().map(|_| self.read()).collect()
    }

    /// Like [`call`](Self::call), but an error reply is an `Err` naming the command.
    pub fn call_ok(&mut self, args: &[&[u8]]) -> Result<Value, ClientError> {
        let v = self.call(args)?;
        check(args, v)
    }

    /// Like [`pipeline`](Self::pipeline), but the first error reply is an `Err`.
    pub fn pipeline_ok(&mut self, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Value>, ClientError> {
        let replies = self.pipeline(cmds)?;
        for (cmd, v) in cmds.iter().zip(&replies) {
            if let Some(e) = v.error() {
                let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
                return Err(ClientError::Reply {
                    command: describe(&args),
                    error: e.to_string(),
                });
            }
        }
        Ok(replies)
    }

    /// `SUBSCRIBE` or `PSUBSCRIBE` (`command`) to `channels`, and wait for
    /// Redis to confirm each. From then on Redis pushes messages unasked:
    /// read them with [`fill`](Self::fill) and [`next_reply`](Self::next_reply).
    pub fn subscribe(&mut self, command: &[u8], channels: &[&[u8]]) -> Result<(), ClientError> {
        let mut args = Vec::with_capacity(1 + channels.len());
        args.push(command);
        args.extend_from_slice(channels);
        self.queue(&args);
        self.flush()?;
        let deadline = Instant::now() + self.timeout;
        for _ in channels {
            check(&args, self.read_until(deadline)?)?;
        }
        Ok(())
    }

    /// Convenience for tests and tools: a command given as strings.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Value, ClientError> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call(&args)
    }
}

/// A command for a log line: its first words, shortened.
pub fn describe(args: &[&[u8]]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().take(4).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let text = String::from_utf8_lossy(a);
        if text.chars().count() > 48 {
            out.extend(text.chars().take(48));
            out.push('…');
        } else {
            out.push_str(&text);
        }
    }
    if args.len() > 4 {
        out.push_str(" …");
    }
    out
}

fn check(args: &[&[u8]], v: Value) -> Result<Value, ClientError> {
    match v.error() {
        Some(e) => Err(ClientError::Reply {
            command: describe(args),
            error: e.to_string(),
        }),
        None => Ok(v),
    }
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;

    /// A client connected to a listener this test plays Redis on.
    fn pair(name: &str) -> (Client, UnixStream, PathBuf) {
        let path =
            std::env::temp_dir().join(format!("syncd-client-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let client = Client::connect(&Address::Unix(path.clone()), Duration::from_secs(5)).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server, path)
    }

    /// Wait until the client's socket has something, then fill.
    fn fill_ready(c: &mut Client) -> Result<usize, ClientError> {
        socket::wait_fd(c.as_raw_fd(), libc::POLLIN, Duration::from_secs(5)).unwrap();
        c.fill()
    }

    #[test]
    fn pushed_replies_are_handed_over_borrowed_and_a_split_one_waits_for_its_rest() {
        let (mut c, mut server, path) = pair("push");
        assert_eq!(c.fill().unwrap(), 0);
        assert_eq!(c.next_reply().unwrap(), None);
        server
            .write_all(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\nhset\r\n:1\r")
            .unwrap();
        fill_ready(&mut c).unwrap();
        match c.next_reply().unwrap() {
            Some(Reply::Array(items)) => assert_eq!(items[2], Reply::Bulk(b"hset")),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.next_reply().unwrap(), None);
        server.write_all(b"\n").unwrap();
        fill_ready(&mut c).unwrap();
        assert_eq!(c.next_reply().unwrap(), Some(Reply::Int(1)));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_peer_that_closed_is_closed_after_its_last_reply() {
        let (mut c, mut server, path) = pair("closed");
        server.write_all(b":5\r\n").unwrap();
        drop(server);
        fill_ready(&mut c).unwrap();
        assert_eq!(c.next_reply().unwrap(), Some(Reply::Int(5)));
        assert!(matches!(fill_ready(&mut c), Err(ClientError::Closed)));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_reply_larger_than_the_buffer_grows_it_and_arrives_whole() {
        let (mut c, mut server, path) = pair("large");
        let big = vec![b'x'; 5 * IN_BYTES / 2];
        let writer = std::thread::spawn(move || {
            let mut cmd = [0u8; 64];
            let _ = server.read(&mut cmd).unwrap();
            server.write_all(b"+OK\r\n").unwrap();
            server
                .write_all(format!("${}\r\n", big.len()).as_bytes())
                .unwrap();
            server.write_all(&big).unwrap();
            server.write_all(b"\r\n").unwrap();
            server
        });
        assert_eq!(c.call(&[b"PING"]).unwrap(), Value::Status(b"OK".to_vec()));
        match c.read().unwrap() {
            Value::Bulk(b) => assert!(b.len() == 5 * IN_BYTES / 2 && b.iter().all(|&x| x == b'x')),
            other => panic!("{other:?}"),
        }
        drop(writer.join().unwrap());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn subscribe_waits_for_every_confirmation_and_an_error_names_the_command() {
        let (mut c, mut server, path) = pair("subscribe");
        let confirm = b"*3\r\n$10\r\npsubscribe\r\n$1\r\na\r\n:1\r\n\
                        *3\r\n$10\r\npsubscribe\r\n$1\r\nb\r\n:2\r\n";
        server.write_all(confirm).unwrap();
        c.subscribe(b"PSUBSCRIBE", &[b"a", b"b"]).unwrap();
        let mut sent = [0u8; 64];
        let n = server.read(&mut sent).unwrap();
        assert_eq!(
            &sent[..n],
            b"*3\r\n$10\r\nPSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        server.write_all(b"-ERR nope\r\n").unwrap();
        match c.subscribe(b"SUBSCRIBE", &[b"c"]) {
            Err(ClientError::Reply { command, error }) => {
                assert_eq!(
                    (command.as_str(), error.as_str()),
                    ("SUBSCRIBE c", "ERR nope")
                );
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(path).unwrap();
    }
}

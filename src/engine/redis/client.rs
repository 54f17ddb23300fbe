//! A small blocking Redis client with a deadline on every call.
//!
//! Used where waiting is the point: portsyncd's start-up reads (before the
//! netlink socket exists), `flood`, and the tests. The event loop never uses
//! it; it has [`super::conn::RedisConn`].

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::encode;
use super::reply::{self, Reply};
use super::socket::{self, Transfer};
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

    /// Text of a bulk or status reply (lossy).
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

    /// Field/value pairs of an `HGETALL` reply, as strings.
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
            ClientError::Reply { command, error } => write!(f, "{command}: {error}"),
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

/// A blocking connection.
pub struct Client {
    fd: OwnedFd,
    inbuf: Vec<u8>,
    start: usize,
    timeout: Duration,
}

impl Client {
    /// Connect within `timeout`; every later call also gets `timeout`.
    pub fn connect(addr: &Address, timeout: Duration) -> io::Result<Client> {
        let fd = socket::connect_wait(addr, timeout)?;
        Ok(Client {
            fd,
            inbuf: Vec::with_capacity(16 << 10),
            start: 0,
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
        let deadline = Instant::now() + self.timeout;
        while !out.is_empty() {
            match socket::send(self.fd.as_raw_fd(), out)? {
                Transfer::Bytes(n) => out = &out[n..],
                Transfer::WouldBlock => self.wait(libc::POLLOUT, deadline)?,
            }
        }
        Ok(())
    }

    fn wait(&self, events: i16, deadline: Instant) -> Result<(), ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !socket::wait_fd(self.fd.as_raw_fd(), events, left)? {
            return Err(ClientError::Timeout);
        }
        Ok(())
    }

    /// Read one reply.
    pub fn read(&mut self) -> Result<Value, ClientError> {
        self.read_until(Instant::now() + self.timeout)
    }

    /// Read one reply, waiting at most until `deadline`.
    pub fn read_until(&mut self, deadline: Instant) -> Result<Value, ClientError> {
        loop {
            match reply::decode(&self.inbuf[self.start..]) {
                Ok(Some((r, used))) => {
                    let v = Value::from_reply(&r);
                    self.start += used;
                    if self.start == self.inbuf.len() {
                        self.inbuf.clear();
                        self.start = 0;
                    }
                    return Ok(v);
                }
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.0)),
            }
            if self.inbuf.len() - self.start > MAX_REPLY_BYTES {
                return Err(ClientError::TooLarge(MAX_REPLY_BYTES));
            }
            if self.start > 0 {
                self.inbuf.drain(..self.start);
                self.start = 0;
            }
            let len = self.inbuf.len();
            self.inbuf.resize(len + (64 << 10), 0);
            let got = socket::recv(self.fd.as_raw_fd(), &mut self.inbuf[len..]);
            match got {
                Ok(Transfer::Bytes(0)) => {
                    self.inbuf.truncate(len);
                    return Err(ClientError::Closed);
                }
                Ok(Transfer::Bytes(n)) => self.inbuf.truncate(len + n),
                Ok(Transfer::WouldBlock) => {
                    self.inbuf.truncate(len);
                    self.wait(libc::POLLIN, deadline)?;
                }
                Err(e) => {
                    self.inbuf.truncate(len);
                    return Err(e.into());
                }
            }
        }
    }

    /// One command and its reply (an error reply is a `Value::Error`).
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Value, ClientError> {
        let mut out = Vec::new();
        encode::command(&mut out, args);
        self.send_raw(&out)?;
        self.read()
    }

    /// Several commands in one write; their replies in order.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Value>, ClientError> {
        let mut out = Vec::new();
        for cmd in cmds {
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
            encode::command(&mut out, &args);
        }
        self.send_raw(&out)?;
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

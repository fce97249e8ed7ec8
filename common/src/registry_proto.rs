//! The registry's line protocol as types: what servers and the load balancer
//! send ([`ClientLine`]) and what the registry answers ([`RegistryLine`]), with
//! strict parsing ([`ClientLine::parse`], [`RegistryLine::parse`]) and
//! formatting (`Display` without the newline, `write` with it). Also owns the
//! line framing shared by both ends ([`LineBuffer`]), so the registry's reactor
//! and the clients split a byte stream into lines the same way.
//!
//! ```text
//! client -> registry                      registry -> client
//! HELLO id=7 mac=02:00:00:00:00:07 ip=10.0.0.7 [udp=9000]   OK ttl_ms=1500
//! BEAT                                    (no answer)
//! LIST | WATCH <version>                  SERVERS version=<v> count=<n>
//!                                         <id> <mac> <ip> <udp-or-0>   (n times)
//!                                         END
//! STATS                                   STAT <name> <value> ... END
//! anything else                           ERR <reason>
//! ```
//!
//! With a deployment key (docs/SECURITY.md), every client line except `BEAT`
//! ends with a proof of the key, `proof=<unix_ms>.<nonce>.<tag>` ([`Proof`],
//! [`SignedLine`]): the tag is an HMAC-SHA256 over [`signing_input`], that
//! is the line's canonical form (its `Display`), the sender's wall-clock
//! time in milliseconds and a random 64-bit nonce, so the registry can
//! refuse forged, stale and replayed lines.
//!
//! ```text
//! HELLO id=7 mac=02:00:00:00:00:07 ip=10.0.0.7 proof=1767225600000.9f3a0c1d2e4b5a69.<64 hex>
//! WATCH 42 proof=1767225600500.0123456789abcdef.<64 hex>
//! ```
//!
//! A line is ASCII, terminated by `\n` (a `\r` before it is tolerated so an
//! operator can use `nc -C`), and at most [`MAX_LINE`] bytes including the
//! terminator. Tokens are separated by ASCII whitespace. Keywords are upper
//! case; `HELLO` takes `key=value` pairs in any order, each at most once, and
//! no others.

use core::fmt;
use core::str::FromStr;
use std::io;
use std::net::Ipv4Addr;

use crate::wire::MacAddr;

/// The longest line either side may send, in bytes, including the `\n`.
pub const MAX_LINE: usize = 256;

/// Longest offending token an error quotes back; keeps errors (and the `ERR`
/// lines made from them) short whatever the input was.
const MAX_QUOTE: usize = 32;

/// One registered server, as the registry lists it: its id (1..=255, what the
/// server puts in replies), its MAC (where the load balancer sends frames),
/// its IPv4 address and optional UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerEntry {
    /// Never 0: the parsers reject 0, and the registry only lists parsed ids.
    pub id: u8,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// `None` is written as port 0 in a list entry and omitted in `HELLO`.
    pub udp: Option<u16>,
}

/// A line a server or the load balancer sends to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientLine {
    /// Registers the connection as server `id` (replacing any entry with the
    /// same MAC).
    Hello {
        id: u8,
        mac: MacAddr,
        ip: Ipv4Addr,
        udp: Option<u16>,
    },
    /// Keeps the registration of this connection alive for another TTL.
    Beat,
    /// Asks for the current server list.
    List,
    /// Asks for the server list as soon as its version differs from this one
    /// (or after the registry's watch timeout, with the same version).
    Watch(u64),
    /// Asks for the registry's counters (`STAT` lines then `END`).
    Stats,
}

/// A line the registry sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryLine {
    /// `HELLO` accepted; beat more often than this.
    Ok { ttl_ms: u64 },
    /// Header of a server list: `count` [`RegistryLine::Entry`] lines and an
    /// [`RegistryLine::End`] follow.
    Servers { version: u64, count: usize },
    /// One live server inside a list.
    Entry(ServerEntry),
    /// Ends a server list or a stats block.
    End,
    /// One counter in the answer to `STATS`; `name` is `[a-z0-9_]+`.
    Stat { name: String, value: u64 },
    /// The request was refused or not understood. The reason is printable
    /// ASCII; formatting replaces anything else with `?` and shortens it so
    /// the line fits [`MAX_LINE`].
    Err(String),
}

/// Why a line is not a valid protocol line. Each malformed thing has its own
/// variant; quoted input is shortened to a few dozen characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("line too long ({len} bytes, at most {MAX_LINE} with the newline)")]
    TooLong { len: usize },
    #[error("line is not ASCII")]
    NotAscii,
    #[error("control character {0:#04x} in line")]
    ControlCharacter(u8),
    #[error("empty line")]
    Empty,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("unexpected argument {0:?}")]
    UnexpectedArgument(String),
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    #[error("duplicate key {0}")]
    DuplicateKey(&'static str),
    #[error("bad id {0:?} (expected 1..=255)")]
    BadId(String),
    #[error("bad mac {0:?} (expected aa:bb:cc:dd:ee:ff)")]
    BadMac(String),
    #[error("mac {0} is not unicast")]
    MacNotUnicast(MacAddr),
    #[error("bad ip {0:?} (expected a.b.c.d)")]
    BadIp(String),
    #[error("bad udp port {0:?} (expected 1..=65535, or 0 for none in a list entry)")]
    BadPort(String),
    #[error("bad {field} {value:?} (expected a decimal number)")]
    BadNumber { field: &'static str, value: String },
    #[error("bad stat name {0:?} (expected [a-z0-9_]+)")]
    BadStatName(String),
    #[error("bad proof {0:?} (expected proof=<unix_ms>.<16 hex digits>.<64 hex digits>)")]
    BadProof(String),
}

fn quote(token: &str) -> String {
    // Tokens come from ASCII-checked lines, so byte slicing is on a boundary.
    token[..token.len().min(MAX_QUOTE)].to_string()
}

/// Checks the parts of a line every parser shares and returns it without a
/// trailing `\n` / `\r\n`.
fn check_line(line: &str) -> Result<&str, ProtoError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if line.len() + 1 > MAX_LINE {
        return Err(ProtoError::TooLong {
            len: line.len() + 1,
        });
    }
    if !line.is_ascii() {
        return Err(ProtoError::NotAscii);
    }
    let line = line.strip_suffix('\r').unwrap_or(line);
    // Only printable text and tabs: a NUL or an embedded newline in a
    // reason would otherwise be stored and echoed back altered (found by
    // the registry_line fuzz target).
    if let Some(bad) = line.bytes().find(|b| b.is_ascii_control() && *b != b'\t') {
        return Err(ProtoError::ControlCharacter(bad));
    }
    Ok(line)
}

fn bytes_to_str(bytes: &[u8]) -> Result<&str, ProtoError> {
    if bytes.len() > MAX_LINE {
        return Err(ProtoError::TooLong { len: bytes.len() });
    }
    core::str::from_utf8(bytes).map_err(|_| ProtoError::NotAscii)
}

fn parse_number(field: &'static str, token: &str) -> Result<u64, ProtoError> {
    // `u64::from_str` accepts a leading `+`; the protocol does not.
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtoError::BadNumber {
            field,
            value: quote(token),
        });
    }
    token.parse().map_err(|_| ProtoError::BadNumber {
        field,
        value: quote(token),
    })
}

fn parse_id(token: &str) -> Result<u8, ProtoError> {
    let bad = || ProtoError::BadId(quote(token));
    if token.is_empty() || token.len() > 3 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match token.parse::<u8>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(id) => Ok(id),
    }
}

fn parse_mac(token: &str) -> Result<MacAddr, ProtoError> {
    let mac = MacAddr::from_str(token).map_err(|_| ProtoError::BadMac(quote(token)))?;
    if !mac.is_unicast() {
        return Err(ProtoError::MacNotUnicast(mac));
    }
    Ok(mac)
}

fn parse_ip(token: &str) -> Result<Ipv4Addr, ProtoError> {
    Ipv4Addr::from_str(token).map_err(|_| ProtoError::BadIp(quote(token)))
}

/// A port: `1..=65535`, or `0` meaning none where `zero_is_none`.
fn parse_port(token: &str, zero_is_none: bool) -> Result<Option<u16>, ProtoError> {
    let bad = || ProtoError::BadPort(quote(token));
    if token.is_empty() || token.len() > 5 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match token.parse::<u16>() {
        Ok(0) if zero_is_none => Ok(None),
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(Some(port)),
    }
}

/// Splits `key=value`, checking the key is one of `keys` and not yet seen.
/// Returns the index of the key in `keys`.
fn key_value<'a>(
    token: &'a str,
    keys: &[&'static str],
    seen: &mut [bool],
) -> Result<(usize, &'a str), ProtoError> {
    let (key, value) = token
        .split_once('=')
        .ok_or_else(|| ProtoError::NotKeyValue(quote(token)))?;
    let index = keys
        .iter()
        .position(|k| *k == key)
        .ok_or_else(|| ProtoError::UnknownKey(quote(key)))?;
    if seen[index] {
        return Err(ProtoError::DuplicateKey(keys[index]));
    }
    seen[index] = true;
    Ok((index, value))
}

fn no_more<'a>(mut tokens: impl Iterator<Item = &'a str>) -> Result<(), ProtoError> {
    match tokens.next() {
        Some(extra) => Err(ProtoError::UnexpectedArgument(quote(extra))),
        None => Ok(()),
    }
}

impl ClientLine {
    /// Parses one line (with or without its `\n`).
    pub fn parse(line: &str) -> Result<ClientLine, ProtoError> {
        let line = check_line(line)?;
        let mut tokens = line.split_ascii_whitespace();
        let command = tokens.next().ok_or(ProtoError::Empty)?;
        let parsed = match command {
            "HELLO" => Self::parse_hello(&mut tokens)?,
            "BEAT" => ClientLine::Beat,
            "LIST" => ClientLine::List,
            "STATS" => ClientLine::Stats,
            "WATCH" => {
                let version = tokens.next().ok_or(ProtoError::Missing("version"))?;
                ClientLine::Watch(parse_number("version", version)?)
            }
            other => return Err(ProtoError::UnknownCommand(quote(other))),
        };
        no_more(tokens)?;
        Ok(parsed)
    }

    /// Parses one line given as bytes (as read from a socket).
    pub fn parse_bytes(line: &[u8]) -> Result<ClientLine, ProtoError> {
        Self::parse(bytes_to_str(line)?)
    }

    fn parse_hello<'a>(
        tokens: &mut impl Iterator<Item = &'a str>,
    ) -> Result<ClientLine, ProtoError> {
        const KEYS: [&str; 4] = ["id", "mac", "ip", "udp"];
        let mut seen = [false; 4];
        let (mut id, mut mac, mut ip, mut udp) = (None, None, None, None);
        for token in tokens {
            match key_value(token, &KEYS, &mut seen)? {
                (0, v) => id = Some(parse_id(v)?),
                (1, v) => mac = Some(parse_mac(v)?),
                (2, v) => ip = Some(parse_ip(v)?),
                (_, v) => udp = parse_port(v, false)?,
            }
        }
        Ok(ClientLine::Hello {
            id: id.ok_or(ProtoError::Missing("id"))?,
            mac: mac.ok_or(ProtoError::Missing("mac"))?,
            ip: ip.ok_or(ProtoError::Missing("ip"))?,
            udp,
        })
    }

    /// The entry a `HELLO` asks to register; `None` for other lines.
    pub fn entry(&self) -> Option<ServerEntry> {
        match *self {
            ClientLine::Hello { id, mac, ip, udp } => Some(ServerEntry { id, mac, ip, udp }),
            _ => None,
        }
    }

    /// Writes the line with its `\n`.
    pub fn write<W: io::Write>(&self, out: &mut W) -> io::Result<()> {
        writeln!(out, "{self}")
    }
}

impl fmt::Display for ClientLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientLine::Hello { id, mac, ip, udp } => {
                write!(f, "HELLO id={id} mac={mac} ip={ip}")?;
                match udp {
                    Some(port) => write!(f, " udp={port}"),
                    None => Ok(()),
                }
            }
            ClientLine::Beat => f.write_str("BEAT"),
            ClientLine::List => f.write_str("LIST"),
            ClientLine::Stats => f.write_str("STATS"),
            ClientLine::Watch(version) => write!(f, "WATCH {version}"),
        }
    }
}

/// Bytes of a proof's tag: an HMAC-SHA256.
pub const TAG_LEN: usize = 32;

/// What the last token `proof=` starts with.
const PROOF_KEY: &str = "proof=";

/// A proof that the sender of a line holds the deployment key: the sender's
/// wall-clock time, a random nonce and the HMAC-SHA256 tag over
/// [`signing_input`]. Checking it is the registry's job
/// (`ipcs_common::registry_auth`, `ipcs_registry::session`); this type is only
/// its wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Proof {
    /// Milliseconds since the Unix epoch when the line was made.
    pub unix_ms: u64,
    /// Random; the registry refuses a nonce it has seen within its window.
    pub nonce: u64,
    pub tag: [u8; TAG_LEN],
}

/// A client line with its proof, if it carries one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLine {
    pub line: ClientLine,
    pub proof: Option<Proof>,
}

/// What the tag of a proof covers: a fixed label (so a tag made for
/// anything else never verifies here), the time, the nonce and the line's
/// canonical form. Canonical because the registry recomputes it from the
/// parsed line: whitespace or `HELLO` key order cannot change the tag.
pub fn signing_input(line: &ClientLine, unix_ms: u64, nonce: u64) -> String {
    format!("ipcs-registry-v1 {unix_ms} {nonce:016x} {line}")
}

/// `2 * N` lower-case hex digits as bytes (proofs' tags, key files).
pub(crate) fn parse_hex<const N: usize>(token: &str) -> Option<[u8; N]> {
    let digits = token.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

impl Proof {
    /// Parses the value of a `proof=` token: `<unix_ms>.<16 hex>.<64 hex>`,
    /// hex in lower case.
    pub fn parse(value: &str) -> Result<Proof, ProtoError> {
        let bad = || ProtoError::BadProof(quote(value));
        let mut parts = value.split('.');
        let (Some(ms), Some(nonce), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let unix_ms = parse_number("proof time", ms).map_err(|_| bad())?;
        let nonce = parse_hex::<8>(nonce).ok_or_else(bad)?;
        let tag = parse_hex::<TAG_LEN>(tag).ok_or_else(bad)?;
        Ok(Proof {
            unix_ms,
            nonce: u64::from_be_bytes(nonce),
            tag,
        })
    }
}

impl fmt::Display for Proof {
    /// The token form, `proof=<unix_ms>.<nonce>.<tag>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PROOF_KEY}{}.{:016x}.", self.unix_ms, self.nonce)?;
        self.tag.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl SignedLine {
    /// A line without a proof.
    pub fn bare(line: ClientLine) -> SignedLine {
        SignedLine { line, proof: None }
    }

    /// Parses one line (with or without its `\n`): a [`ClientLine`],
    /// optionally followed by a `proof=` token as its last token. A
    /// `proof=` anywhere else is an unknown key or an unexpected argument.
    pub fn parse(line: &str) -> Result<SignedLine, ProtoError> {
        let body = check_line(line)?.trim_end_matches(|c: char| c.is_ascii_whitespace());
        let split = body.rsplit_once(|c: char| c.is_ascii_whitespace());
        match split {
            Some((rest, last)) if last.starts_with(PROOF_KEY) => Ok(SignedLine {
                proof: Some(Proof::parse(&last[PROOF_KEY.len()..])?),
                line: ClientLine::parse(rest)?,
            }),
            _ => Ok(SignedLine::bare(ClientLine::parse(body)?)),
        }
    }

    /// Parses one line given as bytes (as read from a socket).
    pub fn parse_bytes(line: &[u8]) -> Result<SignedLine, ProtoError> {
        Self::parse(bytes_to_str(line)?)
    }

    /// Writes the line with its `\n`.
    pub fn write<W: io::Write>(&self, out: &mut W) -> io::Result<()> {
        writeln!(out, "{self}")
    }
}

impl fmt::Display for SignedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.line)?;
        match &self.proof {
            Some(proof) => write!(f, " {proof}"),
            None => Ok(()),
        }
    }
}

fn valid_stat_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl RegistryLine {
    /// An `ERR` line for any displayable reason (typically a [`ProtoError`]).
    pub fn err(reason: impl fmt::Display) -> RegistryLine {
        RegistryLine::Err(reason.to_string())
    }

    /// Parses one line (with or without its `\n`).
    pub fn parse(line: &str) -> Result<RegistryLine, ProtoError> {
        let line = check_line(line)?;
        let trimmed = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let mut tokens = trimmed.split_ascii_whitespace();
        let first = tokens.next().ok_or(ProtoError::Empty)?;
        let parsed = match first {
            "OK" => {
                const KEYS: [&str; 1] = ["ttl_ms"];
                let token = tokens.next().ok_or(ProtoError::Missing("ttl_ms"))?;
                let (_, value) = key_value(token, &KEYS, &mut [false])?;
                RegistryLine::Ok {
                    ttl_ms: parse_number("ttl_ms", value)?,
                }
            }
            "SERVERS" => {
                const KEYS: [&str; 2] = ["version", "count"];
                let mut seen = [false; 2];
                let (mut version, mut count) = (None, None);
                for token in tokens.by_ref() {
                    match key_value(token, &KEYS, &mut seen)? {
                        (0, v) => version = Some(parse_number("version", v)?),
                        (_, v) => {
                            let n = parse_number("count", v)?;
                            let n = usize::try_from(n).map_err(|_| ProtoError::BadNumber {
                                field: "count",
                                value: quote(v),
                            })?;
                            count = Some(n);
                        }
                    }
                }
                RegistryLine::Servers {
                    version: version.ok_or(ProtoError::Missing("version"))?,
                    count: count.ok_or(ProtoError::Missing("count"))?,
                }
            }
            "END" => RegistryLine::End,
            "STAT" => {
                let name = tokens.next().ok_or(ProtoError::Missing("stat name"))?;
                if !valid_stat_name(name) {
                    return Err(ProtoError::BadStatName(quote(name)));
                }
                let value = tokens.next().ok_or(ProtoError::Missing("stat value"))?;
                RegistryLine::Stat {
                    name: name.to_string(),
                    value: parse_number("stat value", value)?,
                }
            }
            "ERR" => {
                // The reason is free text: the rest of the line, verbatim.
                let reason = trimmed["ERR".len()..].trim_matches(|c: char| c.is_ascii_whitespace());
                if reason.is_empty() {
                    return Err(ProtoError::Missing("reason"));
                }
                return Ok(RegistryLine::Err(reason.to_string()));
            }
            id if id.bytes().next().is_some_and(|b| b.is_ascii_digit()) => {
                let id = parse_id(id)?;
                let mac = parse_mac(tokens.next().ok_or(ProtoError::Missing("mac"))?)?;
                let ip = parse_ip(tokens.next().ok_or(ProtoError::Missing("ip"))?)?;
                let udp = parse_port(tokens.next().ok_or(ProtoError::Missing("udp port"))?, true)?;
                RegistryLine::Entry(ServerEntry { id, mac, ip, udp })
            }
            other => return Err(ProtoError::UnknownCommand(quote(other))),
        };
        no_more(tokens)?;
        Ok(parsed)
    }

    /// Parses one line given as bytes (as read from a socket).
    pub fn parse_bytes(line: &[u8]) -> Result<RegistryLine, ProtoError> {
        Self::parse(bytes_to_str(line)?)
    }

    /// Writes the line with its `\n`.
    pub fn write<W: io::Write>(&self, out: &mut W) -> io::Result<()> {
        writeln!(out, "{self}")
    }
}

impl fmt::Display for ServerEntry {
    /// The list-entry form: `<id> <mac> <ip> <udp-or-0>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let udp = self.udp.unwrap_or(0);
        write!(f, "{} {} {} {}", self.id, self.mac, self.ip, udp)
    }
}

impl fmt::Display for RegistryLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryLine::Ok { ttl_ms } => write!(f, "OK ttl_ms={ttl_ms}"),
            RegistryLine::Servers { version, count } => {
                write!(f, "SERVERS version={version} count={count}")
            }
            RegistryLine::Entry(entry) => write!(f, "{entry}"),
            RegistryLine::End => f.write_str("END"),
            RegistryLine::Stat { name, value } => write!(f, "STAT {name} {value}"),
            RegistryLine::Err(reason) => {
                // Whatever the reason holds, emit exactly one valid line.
                const ROOM: usize = MAX_LINE - "ERR \n".len();
                let mut reason: String = reason
                    .trim()
                    .chars()
                    .take(ROOM)
                    .map(|c| {
                        if c.is_ascii_graphic() || c == ' ' || c == '\t' {
                            c
                        } else {
                            '?'
                        }
                    })
                    .collect();
                if reason.is_empty() {
                    reason.push('?');
                }
                write!(f, "ERR {reason}")
            }
        }
    }
}

/// Why [`LineBuffer`] gave up on its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line longer than {max} bytes")]
pub struct LineTooLong {
    pub max: usize,
}

/// Splits a byte stream into `\n`-terminated lines of at most `max` bytes
/// (terminator included), holding at most one partial line between reads.
/// Memory is bounded by `max` whatever the peer sends.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    max: usize,
    /// The buffer holds a line already handed out; clear it on the next call.
    complete: bool,
}

impl LineBuffer {
    /// A buffer for lines of at most `max` bytes (clamped to 1..=[`MAX_LINE`]).
    pub fn new(max: usize) -> LineBuffer {
        let max = max.clamp(1, MAX_LINE);
        LineBuffer {
            buf: Vec::with_capacity(max),
            max,
            complete: false,
        }
    }

    /// Takes bytes from the front of `input` until a line is complete and
    /// returns that line without its `\n`; `None` when `input` ran out first
    /// (the partial line is kept for the next call). After an error the
    /// stream is out of step: the caller should drop the connection.
    pub fn next_line(&mut self, input: &mut &[u8]) -> Result<Option<&[u8]>, LineTooLong> {
        if self.complete {
            self.buf.clear();
            self.complete = false;
        }
        let room = self.max - self.buf.len();
        match input.iter().position(|&b| b == b'\n') {
            Some(pos) if pos < room => {
                self.buf.extend_from_slice(&input[..pos]);
                *input = &input[pos + 1..];
                self.complete = true;
                Ok(Some(&self.buf))
            }
            Some(_) => Err(LineTooLong { max: self.max }),
            None if input.len() < room => {
                self.buf.extend_from_slice(input);
                *input = &[];
                Ok(None)
            }
            None => Err(LineTooLong { max: self.max }),
        }
    }

    /// Bytes of a partial line held.
    pub fn pending(&self) -> usize {
        if self.complete {
            0
        } else {
            self.buf.len()
        }
    }
}

#[cfg(test)]
#[path = "registry_proto_tests.rs"]
mod tests;

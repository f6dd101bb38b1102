//! The socket view: TCP connections from this network namespace to the database,
//! counted from the kernel's `/proc/net/tcp` and `/proc/net/tcp6`.
//!
//! This module owns parsing those tables (hex addresses in host byte order, hex ports,
//! hex states, IPv4-mapped IPv6 addresses folded into IPv4), matching rows whose
//! *remote* end is one of the configured database endpoints, and counting them per
//! endpoint and state. Parsing is pure and never panics: a row it cannot read is skipped
//! and counted. It also owns the view's configuration ([`SocketConfig`], the `socket`
//! section). It does not own resolving the endpoints' host names, the schedule on which
//! the tables are read, the metrics the counts become, nor attributing connections to
//! applications; those belong to the analysis task ([`crate::tick`]), the metrics and the
//! analysis. It reads whatever network namespace the given directory shows: in sidecar
//! mode `/proc/net` is the pod's shared namespace.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::keys::{Key, Kind, Values};
use crate::Mode;

/// Where the kernel shows the current network namespace's TCP tables.
pub const DEFAULT_DIR: &str = "/proc/net";

/// The socket view: this network namespace's TCP connections to the database.
#[derive(Clone, Debug)]
pub struct SocketConfig {
    /// Database endpoints as `host:port`, resolved at every tick.
    pub peers: Vec<String>,
    /// Directory holding `tcp` and `tcp6` (tests point it at fixtures).
    pub proc_net_dir: PathBuf,
}

const PEERS: Key = Key::new("socket.peers", Kind::Text, "-", &["POOLWATCH_SOCKET_PEERS"]);
const PROC_NET_DIR: Key = Key::new(
    "socket.proc_net_dir",
    Kind::Path,
    DEFAULT_DIR,
    &["POOLWATCH_SOCKET_PROC_NET_DIR"],
);

impl SocketConfig {
    /// The keys of the `socket` section.
    pub const KEYS: &[Key] = &[PEERS, PROC_NET_DIR];

    /// Reads the `socket` section. The view is on in sidecar mode when there are peers
    /// to count: `socket.peers`, else the database's endpoint (`database_peer`).
    pub fn from_values(
        v: &mut Values,
        mode: Mode,
        database_peer: Option<String>,
    ) -> Option<SocketConfig> {
        let dir = PathBuf::from(v.text_or_default(&PROC_NET_DIR));
        let explicit = v.text(&PEERS);
        let peers: Vec<String> = match &explicit {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            None => database_peer.into_iter().collect(),
        };
        for p in &peers {
            let ok = p
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                v.bad(&PEERS, "a comma-separated list of host:port");
                return None;
            }
        }
        match mode {
            Mode::Sidecar if !peers.is_empty() => Some(SocketConfig {
                peers,
                proc_net_dir: dir,
            }),
            Mode::Central if explicit.is_some() && !peers.is_empty() => {
                v.warn("socket.peers is ignored in central mode: the socket view counts a pod's own connections".into());
                None
            }
            _ => None,
        }
    }
}

/// A TCP socket state, as numbered in the kernel's `include/net/tcp_states.h` and
/// printed in hex in the `st` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    /// `01`: the connection is open.
    Established,
    /// `02`: a connect is waiting for the peer's SYN-ACK.
    SynSent,
    /// `03`: a SYN was received (the kernel shows `NewSynRecv` for most of these).
    SynRecv,
    /// `04`: we closed; our FIN is not yet acknowledged.
    FinWait1,
    /// `05`: we closed and the peer acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// `06`: both sides closed, we closed first; lingering to absorb late segments.
    TimeWait,
    /// `07`: closed.
    Close,
    /// `08`: the peer closed; this side has not (a socket a process forgot to close).
    CloseWait,
    /// `09`: the peer closed first, then we did; waiting for the last ACK.
    LastAck,
    /// `0A`: a listening socket.
    Listen,
    /// `0B`: both sides closed at the same time.
    Closing,
    /// `0C`: a request socket for a connection still in its handshake.
    NewSynRecv,
}

impl TcpState {
    /// Every state, in the kernel's numbering order.
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The state the kernel numbers `code`, or `None` for a number it does not define.
    pub fn from_code(code: u8) -> Option<TcpState> {
        match code {
            1..=12 => Some(TcpState::ALL[usize::from(code) - 1]),
            _ => None,
        }
    }

    /// The kernel's number for this state (`1` for `Established` ... `12` for
    /// `NewSynRecv`).
    pub fn code(self) -> u8 {
        self as u8 + 1
    }

    /// The lowercase name used in metric labels: `"established"`, `"time_wait"`,
    /// `"close_wait"`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv => "syn_recv",
            TcpState::FinWait1 => "fin_wait1",
            TcpState::FinWait2 => "fin_wait2",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
            TcpState::NewSynRecv => "new_syn_recv",
        }
    }

    /// Index into per-state arrays.
    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) is given as the IPv4 address it maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpRow {
    /// This side of the socket.
    pub local: SocketAddr,
    /// The other side; `0.0.0.0:0` (or `[::]:0`) for a listener.
    pub remote: SocketAddr,
    /// The socket's state.
    pub state: TcpState,
}

/// The rows of one table and how many lines could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Every row that parsed, in the file's order.
    pub rows: Vec<TcpRow>,
    /// Lines that were neither the header, blank, nor a readable row.
    pub skipped: usize,
}

/// Parses the text of `/proc/net/tcp` or `/proc/net/tcp6` (either; the address width
/// tells them apart). The first line is skipped when it is the `sl ...` header; blank
/// lines are ignored; any other line that is not a readable row is counted in
/// [`Table::skipped`]. Never panics.
pub fn parse(text: &str) -> Table {
    let mut rows = Vec::new();
    let skipped = for_each_row(text, |row| rows.push(row));
    Table { rows, skipped }
}

/// Parses one data row (`sl: local remote st ...`); `None` when it is malformed. Only
/// the first four columns are read, so the shorter rows the kernel prints for
/// `TIME_WAIT` sockets parse too. Never panics.
pub fn parse_row(line: &str) -> Option<TcpRow> {
    let mut fields = line.split_ascii_whitespace();
    let sl = fields.next()?.strip_suffix(':')?;
    if sl.is_empty() || !sl.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let local = fields.next()?;
    let remote = fields.next()?;
    // Both ends of a socket are of one family: the same width in hex.
    if local.len() != remote.len() {
        return None;
    }
    let state = TcpState::from_code(hex_u8(fields.next()?)?)?;
    Some(TcpRow {
        local: parse_endpoint(local)?,
        remote: parse_endpoint(remote)?,
        state,
    })
}

/// Calls `f` for every readable row of `text`; returns how many lines were skipped.
fn for_each_row(text: &str, mut f: impl FnMut(TcpRow)) -> usize {
    let mut skipped = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if i == 0 && line.split_ascii_whitespace().next() == Some("sl") {
            continue;
        }
        match parse_row(line) {
            Some(row) => f(row),
            None => skipped += 1,
        }
    }
    skipped
}

/// `ADDR:PORT` with ADDR as 8 or 32 hex digits in host byte order and PORT as 4 hex
/// digits (network order, printed as a number).
fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    Some(SocketAddr::new(parse_ip(addr)?, hex_u16(port)?))
}

/// The kernel prints each 32-bit word of the address as the number its bytes make in
/// host byte order: `0100007F` is 127.0.0.1 on a little-endian machine. IPv6 is four such
/// words. IPv4-mapped IPv6 addresses come back as IPv4.
fn parse_ip(s: &str) -> Option<IpAddr> {
    match s.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(hex_u32(s)?.to_ne_bytes()))),
        32 => {
            let mut bytes = [0u8; 16];
            for (chunk, word) in bytes.chunks_exact_mut(4).zip(0..4) {
                let hex = s.get(word * 8..word * 8 + 8)?;
                chunk.copy_from_slice(&hex_u32(hex)?.to_ne_bytes());
            }
            Some(canonical_ip(IpAddr::V6(Ipv6Addr::from(bytes))))
        }
        _ => None,
    }
}

/// Folds an IPv4-mapped IPv6 address into IPv4; any other address is unchanged (`::1`
/// stays IPv6: only `::ffff:0:0/96` maps).
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Exactly `len` hex digits (no sign, no prefix), as a number.
fn hex_exact(s: &str, len: usize) -> Option<u32> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

fn hex_u32(s: &str) -> Option<u32> {
    hex_exact(s, 8)
}

fn hex_u16(s: &str) -> Option<u16> {
    hex_exact(s, 4).and_then(|n| u16::try_from(n).ok())
}

fn hex_u8(s: &str) -> Option<u8> {
    hex_exact(s, 2).and_then(|n| u8::try_from(n).ok())
}

/// Connections to one database endpoint, by state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCounts {
    /// The endpoint, as it was given.
    pub peer: SocketAddr,
    /// Indexed by [`TcpState`] in kernel order.
    by_state: [u64; 12],
}

impl PeerCounts {
    fn new(peer: SocketAddr) -> PeerCounts {
        PeerCounts {
            peer,
            by_state: [0; 12],
        }
    }

    /// Connections to the endpoint in `state`.
    pub fn get(&self, state: TcpState) -> u64 {
        self.by_state[state.index()]
    }

    /// Connections to the endpoint in any state.
    pub fn total(&self) -> u64 {
        self.by_state.iter().sum()
    }

    /// Every state with its count (zeros included), in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        TcpState::ALL.iter().map(|&s| (s, self.get(s)))
    }
}

/// Counts rows by the endpoint their remote end is, for a fixed list of endpoints.
struct Counter {
    /// Canonical (IP, port) to the index in `peers`.
    index: HashMap<(IpAddr, u16), usize>,
    peers: Vec<PeerCounts>,
}

impl Counter {
    fn new(peers: &[SocketAddr]) -> Counter {
        let mut index = HashMap::with_capacity(peers.len());
        let mut out = Vec::with_capacity(peers.len());
        for &peer in peers {
            index.entry(key(peer)).or_insert_with(|| {
                out.push(PeerCounts::new(peer));
                out.len() - 1
            });
        }
        Counter { index, peers: out }
    }

    fn add(&mut self, row: &TcpRow) {
        if let Some(&i) = self.index.get(&key(row.remote)) {
            self.peers[i].by_state[row.state.index()] += 1;
        }
    }
}

/// What identifies an endpoint: its IP (IPv4-mapped folded into IPv4) and port. The
/// IPv6 scope and flow label are ignored.
fn key(addr: SocketAddr) -> (IpAddr, u16) {
    (canonical_ip(addr.ip()), addr.port())
}

/// Counts `rows` whose remote end is one of `peers` (same IP and port; an IPv4-mapped
/// IPv6 peer matches its IPv4 address), per peer and state. The result has one entry per
/// distinct peer, in the order given (a repeated peer keeps its first spelling), each
/// with every state present, zeros included. Listeners (remote `0.0.0.0:0`) and the
/// database's own side of a local connection (local end equal to the peer) never match.
pub fn count<'a>(
    rows: impl IntoIterator<Item = &'a TcpRow>,
    peers: &[SocketAddr],
) -> Vec<PeerCounts> {
    let mut counter = Counter::new(peers);
    for row in rows {
        counter.add(row);
    }
    counter.peers
}

/// One reading of the socket view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketCounts {
    /// Per configured endpoint, as [`count`] returns them.
    pub peers: Vec<PeerCounts>,
    /// Lines of `tcp` and `tcp6` together that could not be read.
    pub skipped: usize,
}

impl SocketCounts {
    /// Connections to `peer` in `state`; zero for a peer that was not configured.
    pub fn get(&self, peer: SocketAddr, state: TcpState) -> u64 {
        let k = key(peer);
        self.peers
            .iter()
            .find(|p| key(p.peer) == k)
            .map_or(0, |p| p.get(state))
    }
}

/// Why the socket view could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// A table could not be read: `tcp` missing or unreadable, or `tcp6` present but
    /// unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the read returned.
        #[source]
        source: io::Error,
    },
}

/// Reads `dir/tcp` and `dir/tcp6` (`dir` is normally [`DEFAULT_DIR`]) and counts the
/// connections to each of `peers` by state, as [`count`] does. `tcp` must exist; a
/// missing `tcp6` means IPv6 is disabled and counts nothing. Bytes that are not UTF-8
/// only make their line unreadable. Rows are counted as they are parsed, without
/// keeping them.
///
/// Connections whose local port is in `exclude_local_ports` are not counted: that is how
/// poolwatch leaves its own session to the database out of the view.
///
/// The kernel builds these files a page at a time, so a table that changes while it is
/// read can show a socket twice or not at all: a reading is a close estimate, not a
/// snapshot.
pub fn read(
    dir: &Path,
    peers: &[SocketAddr],
    exclude_local_ports: &[u16],
) -> Result<SocketCounts, SocketError> {
    let mut counter = Counter::new(peers);
    let mut skipped = 0;
    for (name, required) in [("tcp", true), ("tcp6", false)] {
        let path = dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if !required && e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(SocketError::Read { path, source }),
        };
        skipped += for_each_row(&String::from_utf8_lossy(&bytes), |row| {
            if !exclude_local_ports.contains(&row.local.port()) {
                counter.add(&row);
            }
        });
    }
    Ok(SocketCounts {
        peers: counter.peers,
        skipped,
    })
}

// The hex below and the fixtures are little-endian captures (x86_64, aarch64); the
// parser itself follows the host's byte order, as the kernel does.
#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;
    use std::net::{SocketAddrV6, TcpListener, TcpStream};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc_net");

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn endpoints_decode_in_host_byte_order() {
        let cases: &[(&str, Option<&str>)] = &[
            ("0100007F:1538", Some("127.0.0.1:5432")),
            ("00000000:0000", Some("0.0.0.0:0")),
            ("020200C0:B59A", Some("192.0.2.2:46490")),
            ("01FFFF0A:1538", Some("10.255.255.1:5432")),
            ("0100000A:0001", Some("10.0.0.1:1")),
            ("FFFFFFFF:FFFF", Some("255.255.255.255:65535")),
            ("0100007f:1a2b", Some("127.0.0.1:6699")),
            // IPv6: four words, each in host order.
            ("00000000000000000000000001000000:1920", Some("[::1]:6432")),
            ("00000000000000000000000000000000:0000", Some("[::]:0")),
            (
                "B80D0120000000000000000001000000:1538",
                Some("[2001:db8::1]:5432"),
            ),
            (
                "000080FE00000000FFBEADDE0100EFBE:0016",
                Some("[fe80::dead:beff:beef:1]:22"),
            ),
            // IPv4-mapped IPv6 comes back as IPv4; IPv4-compatible (::a.b.c.d) does not.
            (
                "0000000000000000FFFF00000100007F:1538",
                Some("127.0.0.1:5432"),
            ),
            (
                "0000000000000000FFFF00000A00000A:1538",
                Some("10.0.0.10:5432"),
            ),
            (
                "0000000000000000000000000100007F:1538",
                Some("[::127.0.0.1]:5432"),
            ),
            ("0000000000000000FFFF0000000000000:1538", None),
            // Malformed.
            ("0100007F:15", None),
            ("0100007F:15380", None),
            ("0100007F", None),
            ("0100007G:1538", None),
            ("+100007F:1538", None),
            ("100007F:1538", None),
            ("0100007F:+538", None),
            ("0100007F1538", None),
            ("", None),
            ("0000000000000000FFFF00000100007:1538", None),
            ("0000000000000000FFFF0000é00007F:1538", None),
            ("0000000é0000000FFFF00000100007F:1538", None),
        ];
        for &(hex, want) in cases {
            assert_eq!(parse_endpoint(hex), want.map(sa), "{hex}");
        }
    }

    #[test]
    fn every_state_decodes_and_names_itself() {
        let cases = [
            ("01", TcpState::Established, "established"),
            ("02", TcpState::SynSent, "syn_sent"),
            ("03", TcpState::SynRecv, "syn_recv"),
            ("04", TcpState::FinWait1, "fin_wait1"),
            ("05", TcpState::FinWait2, "fin_wait2"),
            ("06", TcpState::TimeWait, "time_wait"),
            ("07", TcpState::Close, "close"),
            ("08", TcpState::CloseWait, "close_wait"),
            ("09", TcpState::LastAck, "last_ack"),
            ("0A", TcpState::Listen, "listen"),
            ("0B", TcpState::Closing, "closing"),
            ("0C", TcpState::NewSynRecv, "new_syn_recv"),
        ];
        assert_eq!(cases.len(), TcpState::ALL.len());
        for (i, (hex, state, name)) in cases.into_iter().enumerate() {
            let line = format!("   0: 0100007F:CB66 0100007F:1538 {hex} 00000000:00000000");
            assert_eq!(parse_row(&line).map(|r| r.state), Some(state), "{hex}");
            assert_eq!(state.as_str(), name);
            assert_eq!(state.to_string(), name);
            assert_eq!(state.code() as usize, i + 1);
            assert_eq!(TcpState::from_code(state.code()), Some(state));
            assert_eq!(TcpState::ALL[i], state);
        }
        let lower = parse_row("   0: 0100007F:1538 00000000:0000 0a 00000000:00000000");
        assert_eq!(lower.map(|r| r.state), Some(TcpState::Listen));
        for bad in [0u8, 13, 0xFF] {
            assert_eq!(TcpState::from_code(bad), None, "{bad}");
        }
    }

    #[test]
    fn rows_parse_or_are_rejected() {
        let ok = TcpRow {
            local: sa("127.0.0.1:52070"),
            remote: sa("127.0.0.1:5432"),
            state: TcpState::Established,
        };
        let cases: &[(&str, Option<TcpRow>)] = &[
            (
                "  20: 0100007F:CB66 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 42833 2 0000000055ef77fc 20 0 0 10 -1                     ",
                Some(ok),
            ),
            // The shorter TIME_WAIT form.
            (
                "  23: 0100007F:CB66 0100007F:1538 06 00000000:00000000 03:0000173E 00000000     0        0 0 3 00000000813b8e2e",
                Some(TcpRow { state: TcpState::TimeWait, ..ok }),
            ),
            ("0: 0100007F:CB66 0100007F:1538 01", Some(ok)),
            ("\t7:\t0100007F:CB66\t0100007F:1538\t01", Some(ok)),
            ("  12: 0100007F:CB90 0100007F:15", None),
            ("  12: 0100007F:CB66 0100007F:1538", None),
            ("  12: 0100007F:CB66 0100007F:1538 00 00000000:00000000", None),
            ("  12: 0100007F:CB66 0100007F:1538 0D 00000000:00000000", None),
            ("  12: 0100007F:CB66 0100007F:1538 1 00000000:00000000", None),
            ("  12: 0100007F:CB66 0100007F:1538 001 00000000:00000000", None),
            ("  12 0100007F:CB66 0100007F:1538 01 00000000:00000000", None),
            ("  x: 0100007F:CB66 0100007F:1538 01 00000000:00000000", None),
            ("  : 0100007F:CB66 0100007F:1538 01 00000000:00000000", None),
            (
                "  12: 0100007F:CB66 00000000000000000000000001000000:1538 01 00000000:00000000",
                None,
            ),
            ("  sl  local_address rem_address   st tx_queue rx_queue", None),
            ("garbage", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_row(line), *want, "{line:?}");
        }
    }

    #[test]
    fn tables_skip_the_header_and_count_malformed_lines() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        let row = "   0: 0100007F:CB66 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 42833 2";
        let cases: Vec<(String, usize, usize)> = vec![
            (String::new(), 0, 0),
            (format!("{header}\n"), 0, 0),
            (format!("{header}\n{row}\n"), 1, 0),
            (format!("{header}\n{row}"), 1, 0),
            (format!("{header}\r\n{row}\r\n"), 1, 0),
            (format!("{row}\n{row}\n"), 2, 0),
            (format!("{header}\n{row}\n\n{row}\n"), 2, 0),
            (
                format!("{header}\n{row}\n   1: 0100007F:CB90 0100007F:15\n{row}\n"),
                2,
                1,
            ),
            (format!("{header}\n{header}\n{row}\n"), 1, 1),
            (format!("{header}\nnot a row\n\u{0}\u{1}\n{row}\n"), 1, 2),
            ("\u{FFFD}\u{FFFD}\n".to_string(), 0, 1),
        ];
        for (text, rows, skipped) in cases {
            let t = parse(&text);
            assert_eq!((t.rows.len(), t.skipped), (rows, skipped), "{text:?}");
        }
    }

    #[test]
    fn fixture_tables_parse() {
        let tcp = parse(&std::fs::read_to_string(format!("{FIXTURES}/tcp")).unwrap());
        assert_eq!((tcp.rows.len(), tcp.skipped), (29, 1));
        let listeners = tcp.rows.iter().filter(|r| r.state == TcpState::Listen);
        assert_eq!(listeners.count(), 10);
        assert!(tcp.rows.contains(&TcpRow {
            local: sa("127.0.0.1:5432"),
            remote: sa("0.0.0.0:0"),
            state: TcpState::Listen,
        }));
        let tcp6 = parse(&std::fs::read_to_string(format!("{FIXTURES}/tcp6")).unwrap());
        assert_eq!((tcp6.rows.len(), tcp6.skipped), (8, 0));
        assert!(tcp6.rows.contains(&TcpRow {
            local: sa("127.0.0.1:52104"),
            remote: sa("127.0.0.1:5432"),
            state: TcpState::Established,
        }));
        assert!(tcp6.rows.contains(&TcpRow {
            local: sa("[::1]:44332"),
            remote: sa("[::1]:6432"),
            state: TcpState::FinWait2,
        }));
    }

    #[test]
    fn fixture_counts_per_peer_and_state() {
        let pg = sa("127.0.0.1:5432");
        let remote = sa("10.255.255.1:5432");
        let pooler = sa("[::1]:6432");
        let idle = sa("10.0.0.9:5432");
        let peers = [
            pg,
            remote,
            pooler,
            idle,
            sa("[::1]:5432"),
            sa("127.0.0.1:6432"),
        ];
        let got = read(Path::new(FIXTURES), &peers, &[]).unwrap();
        assert_eq!(got.skipped, 1);
        assert_eq!(got.peers.len(), peers.len());
        use TcpState::*;
        // (peer, state, count): the listener on 5432 and the server's own side of each
        // local connection are not connections to the database.
        let cases = [
            (pg, Established, 4), // three IPv4 + one IPv4-mapped IPv6
            (pg, TimeWait, 1),
            (pg, CloseWait, 1),
            (pg, Listen, 0),
            (pg, FinWait2, 0),
            (remote, Established, 1),
            (pooler, Established, 1),
            (pooler, FinWait2, 1),
            (pooler, Listen, 0),
            (pooler, CloseWait, 0),
            (idle, Established, 0),
            (sa("[::1]:5432"), Established, 0),
            (sa("127.0.0.1:6432"), Established, 0),
            (sa("[::ffff:127.0.0.1]:5432"), Established, 4),
            (sa("192.0.2.99:5432"), Established, 0), // never configured
        ];
        for (peer, state, want) in cases {
            assert_eq!(got.get(peer, state), want, "{peer} {state}");
        }
        let totals: Vec<u64> = got.peers.iter().map(PeerCounts::total).collect();
        assert_eq!(totals, vec![6, 1, 2, 0, 0, 0]);
        let idle_row = &got.peers[3];
        assert_eq!(idle_row.peer, idle);
        assert_eq!(idle_row.iter().count(), 12);
        assert!(idle_row.iter().all(|(_, n)| n == 0));
    }

    #[test]
    fn a_missing_tcp6_counts_nothing_and_a_missing_tcp_is_an_error() {
        let pg = sa("127.0.0.1:5432");
        let got = read(&Path::new(FIXTURES).join("ipv4_only"), &[pg], &[]).unwrap();
        assert_eq!(got.get(pg, TcpState::Established), 3);
        assert_eq!(got.skipped, 1);

        let missing = Path::new(FIXTURES).join("no_such_dir");
        match read(&missing, &[pg], &[]) {
            Err(SocketError::Read { path, source }) => {
                assert_eq!(path, missing.join("tcp"));
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn peers_match_on_ip_and_port_and_repeats_collapse() {
        let rows = [
            TcpRow {
                local: sa("10.1.0.7:40000"),
                remote: sa("10.0.0.5:5432"),
                state: TcpState::Established,
            },
            TcpRow {
                local: sa("10.1.0.7:40001"),
                remote: sa("10.0.0.5:6432"),
                state: TcpState::Established,
            },
            TcpRow {
                local: sa("[fd00::7]:40002"),
                remote: sa("[fd00::5]:5432"),
                state: TcpState::CloseWait,
            },
        ];
        let mut scoped = SocketAddrV6::new("fd00::5".parse().unwrap(), 5432, 0, 3);
        scoped.set_flowinfo(9);
        let peers = [
            sa("10.0.0.5:5432"),
            sa("[::ffff:10.0.0.5]:5432"),
            SocketAddr::V6(scoped),
            sa("10.0.0.6:5432"),
        ];
        let counts = count(&rows, &peers);
        let got: Vec<(SocketAddr, u64, u64)> = counts
            .iter()
            .map(|p| {
                (
                    p.peer,
                    p.get(TcpState::Established),
                    p.get(TcpState::CloseWait),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (sa("10.0.0.5:5432"), 1, 0),
                (SocketAddr::V6(scoped), 0, 1),
                (sa("10.0.0.6:5432"), 0, 0),
            ]
        );
        assert!(count(&rows, &[]).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_proc_net_counts_a_connection_this_test_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = listener.local_addr().unwrap();
        let before = read(Path::new(DEFAULT_DIR), &[peer], &[]).unwrap();
        assert_eq!(before.get(peer, TcpState::Established), 0);

        let client = TcpStream::connect(peer).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        let got = read(Path::new(DEFAULT_DIR), &[peer], &[]).unwrap();
        // Only the client's side has the listener as its remote end.
        assert_eq!(got.get(peer, TcpState::Established), 1);
        drop(client);
    }
}

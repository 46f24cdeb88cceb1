//! The restored copy's port, chosen predictably.
//!
//! `--port` wins. Otherwise the drill takes the standby's port (from
//! `--standby`) plus [`OFFSET`], and if that port is busy the next ones up,
//! [`TRIES`] in all. When that would pass 65535 it counts down from the
//! standby's port minus [`OFFSET`] instead. A port is busy when something
//! listens on it on 127.0.0.1 or ::1, or a PostgreSQL socket for it exists in
//! /var/run/postgresql or /tmp. The same standby therefore always gets the
//! same drill port (5432 → 15432) unless that one is taken.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::Path;

use crate::error::{Error, Result};

/// Distance between the standby's port and the drill's.
pub const OFFSET: u16 = 10_000;
/// How many ports are tried.
pub const TRIES: u16 = 10;
/// Where PostgreSQL puts its Unix sockets by default (Debian, then upstream).
const SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// The ports tried for a standby on `standby_port`, in order.
pub fn candidates(standby_port: u16) -> Vec<u16> {
    match standby_port.checked_add(OFFSET).filter(|b| b.checked_add(TRIES - 1).is_some()) {
        Some(base) => (0..TRIES).map(|i| base + i).collect(),
        None => {
            let base = standby_port.saturating_sub(OFFSET).max(1024 + TRIES);
            (0..TRIES).map(|i| base - i).collect()
        }
    }
}

/// Whether nothing uses `port` on this host.
pub fn is_free(port: u16) -> bool {
    let sockets_free = SOCKET_DIRS.iter().all(|d| {
        let socket = Path::new(d).join(format!(".s.PGSQL.{port}"));
        let lock = Path::new(d).join(format!(".s.PGSQL.{port}.lock"));
        !socket.exists() && !lock.exists()
    });
    sockets_free
        && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        // No IPv6 on the host is not a reason to call the port busy.
        && match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
        }
}

/// The first free port of [`candidates`].
pub fn choose(standby_port: u16) -> Result<u16> {
    let tried = candidates(standby_port);
    tried.iter().copied().find(|p| is_free(*p)).ok_or_else(|| {
        Error::usage(
            format!(
                "no free port for the restored copy: {}..{} (the standby's port {standby_port} + {OFFSET}) are all in use",
                tried[0],
                tried[tried.len() - 1]
            ),
            Some("pass a free --port N".into()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_predictable() {
        assert_eq!(candidates(5432), (15432..15442).collect::<Vec<_>>());
        assert_eq!(candidates(55526), (65526..=65535).collect::<Vec<_>>());
        // Past 65535: count down from the port minus the offset.
        assert_eq!(candidates(60000), (49991..=50000).rev().collect::<Vec<_>>());
        assert_eq!(candidates(65535)[0], 55535);
        assert!(candidates(1).iter().all(|p| *p > 1024));
    }

    #[test]
    fn a_listening_port_is_skipped() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let busy = l.local_addr().unwrap().port();
        assert!(!is_free(busy));
    }
}

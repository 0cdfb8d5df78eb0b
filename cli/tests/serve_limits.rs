//! `gpusel serve` under abuse, over real loopback connections: clients that
//! send their headers a byte at a time, and oversized headers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::serve::serve;
use common::{LAB, gpusel_std_on};

/// Keeps `count` connections to `addr` open, each sending a request's
/// headers one byte at a time and never finishing them, reconnecting
/// whenever the server closes one; until `stop`.
fn slowloris(addr: SocketAddr, count: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let connect = || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .inspect(|s| {
                    let _ = s.set_write_timeout(Some(Duration::from_millis(50)));
                })
        };
        let mut conns: Vec<(Option<TcpStream>, usize)> = (0..count).map(|_| (None, 0)).collect();
        while !stop.load(Ordering::Relaxed) {
            for (conn, sent) in conns.iter_mut() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if conn.is_none() {
                    *conn = connect();
                    *sent = 0;
                }
                let Some(stream) = conn else { continue };
                let byte = head.get(*sent).copied().unwrap_or(b'a');
                if stream.write_all(&[byte]).is_err() {
                    *conn = None;
                } else {
                    *sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// `GET /healthz` on a fresh connection: whether `200 ok` came back
/// within `limit`.
fn probe(addr: SocketAddr, limit: Duration) -> bool {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let left = limit
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let _ = stream.set_read_timeout(Some(left));
    let _ = stream.set_write_timeout(Some(left));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    raw.starts_with(b"HTTP/1.1 200") && started.elapsed() <= limit
}

#[test]
fn slow_clients_cannot_lock_out_healthz() {
    // 300 slow clients against a cap of 128 connections: without shedding,
    // every slot is held by a slow client until its header timeout, and a
    // probe waits behind the 170 others (about 13 s with a 10 s timeout).
    let server = serve(gpusel_std_on(LAB), &["--max-connections", "128"]);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..3)
        .map(|_| slowloris(server.addr, 100, Arc::clone(&stop)))
        .collect();
    // Let them take every slot.
    std::thread::sleep(Duration::from_secs(3));
    // Generous: a probe answered at all is answered in milliseconds; the
    // bound only has to tell that apart from waiting behind the attackers.
    let limit = Duration::from_secs(5);
    let probes = 12;
    let answered = (0..probes)
        .filter(|_| {
            let ok = probe(server.addr, limit);
            std::thread::sleep(Duration::from_millis(250));
            ok
        })
        .count();
    eprintln!("{answered} of {probes} probes answered within {limit:?}");
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    assert!(
        answered * 4 >= probes * 3,
        "only {answered} of {probes} /healthz probes were answered within {limit:?} under 300 slow clients"
    );
    // And the server is still fine afterwards.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn headers_over_64_kib_get_431() {
    let server = serve(gpusel_std_on(LAB), &[]);
    let big = |kib: usize| {
        let value = "a".repeat(1000);
        let lines: Vec<String> = (0..kib).map(|i| format!("X-Big-{i}: {value}")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        server.get_with("/healthz", &refs)
    };
    assert_eq!(big(8).status, 200, "8 KiB of headers are fine");
    for kib in [70, 100] {
        let r = big(kib);
        assert_eq!(r.status, 431, "{kib} KiB of headers: {r:#?}");
    }
}

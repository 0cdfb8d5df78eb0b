//! A stand-in agent for the remote-provider tests that need an agent to
//! misbehave: a blocking HTTP server on loopback answering every request
//! from a closure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// What the stand-in answers: status line and body.
pub type Handler = dyn Fn(&str) -> (String, String) + Send + Sync;

/// Serves `handler` (given the request head, lowercased) on a fresh
/// loopback port until the test process ends; returns `http://127.0.0.1:PORT`.
pub fn stand_in(handler: impl Fn(&str) -> (String, String) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let handler: Arc<Handler> = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || answer(stream, &*handler));
        }
    });
    url
}

/// Serves the snapshot file `path` (re-read per request) to requests that
/// carry `Bearer TOKEN` when `token` is set; 401 to others.
pub fn snapshot_server(path: impl Into<std::path::PathBuf>, token: Option<&str>) -> String {
    let path = path.into();
    let want = token.map(|t| format!("authorization: bearer {}\r\n", t.to_lowercase()));
    stand_in(move |head| {
        if want.as_ref().is_some_and(|w| !head.contains(w.as_str())) {
            return ("401 Unauthorized".into(), "bearer token required".into());
        }
        match std::fs::read_to_string(&path) {
            Ok(body) => ("200 OK".into(), body),
            Err(e) => ("500 Internal Server Error".into(), e.to_string()),
        }
    })
}

fn answer(mut stream: TcpStream, handler: &Handler) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (status, body) = handler(&String::from_utf8_lossy(&head).to_lowercase());
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

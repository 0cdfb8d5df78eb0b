//! Running `gpusel serve` for real on a loopback port, and talking HTTP to
//! it with nothing but a TCP socket (the tests see the bytes a client sees).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Collected, PATIENCE, eventually};

/// A running `gpusel serve`, killed when dropped.
pub struct Served {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    stderr: Collected,
}

/// Starts `cmd` (a gpusel command with its provider set) as
/// `gpusel serve --listen 127.0.0.1:0 ARGS` (ARGS may give another
/// `--listen`) and waits until it says where it listens.
pub fn serve(mut cmd: Command, args: &[&str]) -> Served {
    cmd.arg("serve");
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("gpusel serve starts");
    let stderr = Collected::new(child.stderr.take().expect("stderr piped"));
    // Killed on drop, should it never say where it listens.
    let mut served = Served {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        stderr,
    };
    // `serving http://ADDR/ (dashboard), ...`
    let address = |text: &str| -> Option<SocketAddr> {
        let rest = text.split("serving http://").nth(1)?;
        rest.split_once('/')?.0.parse().ok()
    };
    let text = served
        .stderr
        .wait_for("gpusel serve to say where it listens", |text| {
            address(text).is_some()
        });
    served.addr = address(&text).expect("a socket address");
    served
}

/// An HTTP response as a client receives it.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header called `name` (lowercase).
    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:#?}"))
    }
}

impl Served {
    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], "")
    }

    /// `GET path` with extra header lines (`Name: value`).
    pub fn get_with(&self, path: &str, headers: &[&str]) -> Response {
        self.request("GET", path, headers, "")
    }

    /// Any request; the connection is closed after it.
    pub fn request(&self, method: &str, path: &str, headers: &[&str], body: &str) -> Response {
        let mut stream = TcpStream::connect(self.addr).expect("connect to gpusel serve");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut text = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for h in headers {
            text.push_str(h);
            text.push_str("\r\n");
        }
        if !body.is_empty() {
            text.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        text.push_str("\r\n");
        text.push_str(body);
        stream.write_all(text.as_bytes()).expect("send request");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        parse(&raw)
    }

    /// Waits until `check` holds for `GET path`, and returns that response.
    #[track_caller]
    pub fn wait_for(&self, path: &str, check: impl Fn(&Response) -> bool) -> Response {
        eventually(&format!("GET {path} to get there"), || {
            let r = self.get(path);
            match check(&r) {
                true => Ok(r),
                false => Err(format!("the last answer: {r:#?}")),
            }
        })
    }

    /// Sends `signal` (`TERM`, `INT`) and waits for the exit: its exit code
    /// and stderr.
    pub fn stop(mut self, signal: &str) -> (Option<i32>, String) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(sent.success(), "kill -{signal} failed");
        let status = eventually("gpusel serve to stop", || {
            self.child
                .try_wait()
                .expect("wait")
                .ok_or_else(|| format!("stderr so far:\n{}", self.stderr()))
        });
        // Every line it wrote, read to the end (a child it left running
        // could hold the pipe open: bounded, and not an error).
        let deadline = Instant::now() + PATIENCE;
        while !self.stderr.closed() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        (status.code(), self.stderr())
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.so_far()
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Runs `promtool check metrics` on `text`: `Ok` or its complaint. `None`
/// when promtool is not installed outside CI (in CI that is a failure).
pub fn promtool(text: &str) -> Option<Result<(), String>> {
    if !super::have_tool("promtool", "prometheus") {
        return None;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

/// Leases GPU 7 of `snapshot` in `lock_dir` for a job, `sh -c ... ARGS`
/// (ARGS show in its command line), and returns once the job holds it; the
/// lease lasts until the returned child is killed.
pub fn lease_gpu7(snapshot: &std::path::Path, lock_dir: &std::path::Path, args: &[&str]) -> Child {
    let mut job = super::gpusel_std_on(snapshot)
        .arg("--lock-dir")
        .arg(lock_dir)
        .args(["-d", "7", "--", "sh", "-c", "echo ready; exec sleep 60"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(job.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n", "the job did not start");
    job
}

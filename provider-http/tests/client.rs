//! The client against real HTTP servers on loopback: a canned server per
//! case, answering as a broken, hostile or locked agent would.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gpusel_core::GpuInfoProvider;
use gpusel_http::{Client, Endpoint, ErrorClass, HttpError, HttpProvider, Settings, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-8xa100.json");

/// How a canned server answers every request.
#[derive(Clone)]
enum Answer {
    /// These bytes, then the connection stays open (keep-alive).
    Raw(Vec<u8>),
    /// 200 with this JSON body, if the request carries `Bearer <token>`
    /// (when one is set), else 401.
    Json { body: String, token: Option<String> },
    /// Never answers.
    Hang,
    /// A 200 with chunks forever.
    Endless,
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `answer` on a fresh loopback port; returns its base URL.
async fn serve(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(handle(stream, answer.clone()));
        }
    });
    format!("http://{addr}")
}

async fn handle(mut stream: TcpStream, answer: Arc<Answer>) {
    loop {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let request = String::from_utf8_lossy(&request).to_lowercase();
        let bytes = match &*answer {
            Answer::Raw(bytes) => bytes.clone(),
            Answer::Json { body, token } => {
                let authorized = token.as_ref().is_none_or(|t| {
                    request.contains(&format!("authorization: bearer {}\r\n", t.to_lowercase()))
                });
                if !request.starts_with("get /api/v1/snapshot ") {
                    response("404 Not Found", "no such page")
                } else if authorized {
                    response("200 OK", body)
                } else {
                    response("401 Unauthorized", "{\"error\":\"bearer token required\"}")
                }
            }
            Answer::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Answer::Endless => {
                let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 65536, "[".repeat(65536));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                return;
            }
        };
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

fn lab() -> String {
    std::fs::read_to_string(LAB).unwrap()
}

/// A client with a 1 MiB body cap, and timeouts no answer misses on a
/// loaded machine.
fn client() -> Client {
    client_with(Duration::from_secs(30))
}

/// A client that gives a whole request `timeout`.
fn client_with(timeout: Duration) -> Client {
    Client::new(Settings {
        connect_timeout: Duration::from_secs(30),
        timeout,
        max_body: 1 << 20,
    })
}

async fn fetch(url: &str, token: Option<&Token>) -> Result<gpusel_core::Snapshot, HttpError> {
    fetch_with(client(), url, token).await
}

async fn fetch_with(
    client: Client,
    url: &str,
    token: Option<&Token>,
) -> Result<gpusel_core::Snapshot, HttpError> {
    client
        .fetch(&Endpoint::parse(url).unwrap(), token)
        .await
        .map(|remote| remote.snapshot)
}

fn token_file(dir: &tempfile::TempDir, token: &str) -> PathBuf {
    let path = dir.path().join("token");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{token}").unwrap();
    path
}

#[tokio::test]
async fn a_snapshot_arrives_with_the_remote_host_and_provider_named() {
    let url = serve(Answer::Json {
        body: lab(),
        token: None,
    })
    .await;
    let provider = HttpProvider::new(client(), Endpoint::parse(&url).unwrap(), None);
    assert_eq!(provider.name(), url);
    assert!(provider.is_remote());
    let snapshot = provider.snapshot().await.unwrap();
    let expected: gpusel_core::Snapshot = serde_json::from_str(&lab()).unwrap();
    assert_eq!(snapshot.host, expected.host);
    assert_eq!(snapshot.gpus, expected.gpus);
    assert_eq!(
        snapshot.provider,
        format!("{} via {url}", expected.provider)
    );
    // A second request reuses the pooled connection and gets the same.
    assert_eq!(provider.fetch().await.unwrap().snapshot, expected);
}

#[tokio::test]
async fn the_token_from_the_file_is_sent_and_a_missing_or_wrong_one_is_explained() {
    let url = serve(Answer::Json {
        body: lab(),
        token: Some("good-Token.1-0123456".into()),
    })
    .await;
    let e = fetch(&url, None).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Unauthorized);
    let text = e.to_string();
    assert!(text.contains("401 Unauthorized"), "{text}");
    assert!(
        text.contains("requires a bearer token") && text.contains("GPUSEL_HTTP_TOKEN_FILE"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let wrong = Token::from_file(token_file(&dir, "bad-token-0123456789")).unwrap();
    let text = fetch(&url, Some(&wrong)).await.unwrap_err().to_string();
    assert!(
        text.contains("was not accepted") && text.contains(&dir.path().display().to_string()),
        "{text}"
    );
    assert!(
        !text.contains("bad-token-0123456789"),
        "the error shows the token: {text}"
    );

    let right = Token::from_file(token_file(&dir, "good-Token.1-0123456")).unwrap();
    assert_eq!(fetch(&url, Some(&right)).await.unwrap().gpus.len(), 8);
}

#[tokio::test]
async fn connection_refused_asks_whether_the_agent_runs() {
    // A port held bound but never listening: no other test can take it, and
    // a connection to it is refused.
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    held.bind(&any.into()).unwrap();
    let port = held.local_addr().unwrap().as_socket().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let e = fetch(&url, None).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Down);
    assert_eq!(
        e.to_string(),
        format!(
            "cannot connect to {url}: connection refused; is `gpusel serve` running on 127.0.0.1:{port}?"
        )
    );
}

#[tokio::test]
async fn a_hung_server_times_out_on_time() {
    let url = serve(Answer::Hang).await;
    let start = Instant::now();
    let e = fetch_with(client_with(Duration::from_millis(700)), &url, None)
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.class(), ErrorClass::Slow);
    assert!(e.to_string().contains("did not answer within 700ms"), "{e}");
    assert!(e.to_string().contains("GPUSEL_HTTP_TIMEOUT"), "{e}");
    assert!(
        took >= Duration::from_millis(700),
        "gave up early: {took:?}"
    );
    // Generous: the point is that it does not wait for the server.
    assert!(took < Duration::from_secs(10), "waited {took:?}");
}

#[tokio::test]
async fn a_huge_body_is_refused_whether_announced_or_streamed() {
    let announced = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{{",
        u64::MAX / 2
    );
    let url = serve(Answer::Raw(announced.into_bytes())).await;
    let e = fetch(&url, None).await.unwrap_err();
    assert!(matches!(e, HttpError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("larger than 1 MiB"), "{e}");

    let url = serve(Answer::Endless).await;
    let e = fetch(&url, None).await.unwrap_err();
    assert!(matches!(e, HttpError::TooLarge { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::BadAnswer);
}

#[tokio::test]
async fn answers_that_are_not_snapshots_say_so() {
    let cases = [
        (response("200 OK", "<html>It works!</html>"), "HTML or XML"),
        (response("200 OK", "{\"gpus\": 3}"), "JSON, but not a snapshot"),
        (response("200 OK", ""), "the answer is empty"),
        (
            response("404 Not Found", "\n\x1b[2Jno such page\nsecond line"),
            "answered 404 Not Found (no such page): is it a gpusel agent",
        ),
        (
            response("503 Service Unavailable", "no snapshot yet: NVML is not loaded"),
            "answered 503 Service Unavailable (no snapshot yet: NVML is not loaded)",
        ),
        (
            b"HTTP/1.1 301 Moved Permanently\r\nlocation: http://elsewhere/\r\ncontent-length: 0\r\n\r\n".to_vec(),
            "redirects to http://elsewhere/; redirects are not followed",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(), "request to"),
    ];
    for (raw, want) in cases {
        let url = serve(Answer::Raw(raw.clone())).await;
        let e = fetch(&url, None).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(want),
            "{:?}: {text}",
            String::from_utf8_lossy(&raw)
        );
        assert!(
            !text.contains('\x1b'),
            "control characters reach the terminal: {text:?}"
        );
    }
}

#[tokio::test]
async fn an_invalid_snapshot_is_refused_like_any_provider_s() {
    let twice = lab().replace(
        "GPU-d6a0f4b8-7c2e-4a1d-9f3b-7c9d1f3b5c87",
        "GPU-5f2c7a1e-8b3d-4c6e-9a1f-0d2e4b6c8a10",
    );
    assert_ne!(twice, lab());
    let url = serve(Answer::Json {
        body: twice,
        token: None,
    })
    .await;
    let provider = HttpProvider::new(client(), Endpoint::parse(&url).unwrap(), None);
    let e = provider.snapshot().await.unwrap_err();
    assert!(
        matches!(e, gpusel_core::ProviderError::Invalid { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("two devices have UUID"), "{e}");
}

#[tokio::test]
async fn the_path_prefix_is_kept() {
    let body = lab();
    let raw = response("200 OK", &body);
    // This server answers 200 to anything: check the request line instead.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&raw).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    fetch(&format!("http://{addr}/gpus/"), None).await.unwrap();
    let request = seen.await.unwrap();
    assert!(
        request.starts_with("GET /gpus/api/v1/snapshot HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.to_lowercase().contains("user-agent: gpusel/"),
        "{request}"
    );
    assert!(
        !request.to_lowercase().contains("authorization"),
        "{request}"
    );
}

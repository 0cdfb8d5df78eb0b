//! The agents file of `gpusel serve --agents FILE`:
//!
//! ```toml
//! timeout = "1s"                       # per agent and round; default: the interval, at most 5 s
//!
//! [[agent]]
//! url = "self"                         # this machine's own GPUs, read in-process
//!
//! [[agent]]
//! url = "http://gpu-node-1:9477"
//! name = "node1"                       # default: the URL's host
//! token_file = "/etc/gpusel/node1.token"   # relative paths: from this file's folder
//!
//! [[agent]]
//! url = "http://node02:1080"
//! kind = "nvgpu"                       # an nvgpu agent: its GET /gpu_status is read
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gpusel_http::{Endpoint, Token};
use serde::Deserialize;

/// The literal `url` of the entry for this machine's own GPUs.
pub const SELF: &str = "self";

/// Why the agents file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("agents file {}{}: {message}", path.display(), at.map(|(l, c)| format!(", line {l}, column {c}")).unwrap_or_default())]
pub struct AgentsFileError {
    /// The file.
    pub path: PathBuf,
    /// Line and column of the problem, when known.
    pub at: Option<(usize, usize)>,
    /// What is wrong and what to do.
    pub message: String,
}

/// One node the master shows, as the agents file lists it.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The name shown on the page and in `/api/v1/cluster`.
    pub name: String,
    /// Where its snapshot comes from.
    pub source: NodeSource,
}

/// Where a node's snapshot comes from.
#[derive(Debug, Clone)]
pub enum NodeSource {
    /// This machine's provider, in-process (`url = "self"`).
    This,
    /// An agent over HTTP.
    Remote {
        /// Its URL.
        endpoint: Endpoint,
        /// Its bearer token, if it wants one.
        token: Option<Token>,
        /// What answers there.
        kind: Kind,
    },
}

/// What kind of agent answers at a URL (`kind = ...` in its entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// `gpusel serve` (`/api/v1/snapshot`), the default.
    #[default]
    Gpusel,
    /// An nvgpu agent (`/gpu_status`, see [`gpusel_http::nvgpu`]).
    Nvgpu,
}

impl NodeSpec {
    /// `self`, or the agent's normalized URL.
    pub fn url(&self) -> &str {
        match &self.source {
            NodeSource::This => SELF,
            NodeSource::Remote { endpoint, .. } => endpoint.url(),
        }
    }
}

/// A parsed agents file.
#[derive(Debug, Clone)]
pub struct AgentsFile {
    /// The nodes, in the file's order (the page's order).
    pub nodes: Vec<NodeSpec>,
    /// The `timeout` key, if set.
    pub timeout: Option<Duration>,
}

impl AgentsFile {
    /// Whether `self` is listed (the master then reads its own GPUs too).
    pub fn has_self(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n.source, NodeSource::This))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    timeout: Option<toml::Spanned<String>>,
    #[serde(default)]
    agent: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    url: toml::Spanned<String>,
    name: Option<toml::Spanned<String>>,
    token_file: Option<toml::Spanned<PathBuf>>,
    kind: Option<toml::Spanned<String>>,
}

/// Largest agents file read: thousands of nodes take a few hundred KiB.
const MAX_AGENTS_FILE: u64 = 4 << 20;

/// Reads and checks the agents file at `path`. Token files are read now, so
/// that a typo fails at start, not as an "unauthorized" node later.
pub fn load(path: &Path) -> Result<AgentsFile, AgentsFileError> {
    let text =
        gpusel_core::read_regular_text(path, MAX_AGENTS_FILE).map_err(|e| AgentsFileError {
            path: path.to_path_buf(),
            at: None,
            message: format!("cannot read it: {e}; check the path given to --agents"),
        })?;
    parse(&text, path)
}

/// Parses agents-file `text`; `path` names it in errors and anchors
/// relative token files.
pub fn parse(text: &str, path: &Path) -> Result<AgentsFile, AgentsFileError> {
    let fail = |span: Option<std::ops::Range<usize>>, message: String| AgentsFileError {
        path: path.to_path_buf(),
        at: span.map(|s| line_col(text, s.start)),
        message,
    };
    let file: File = toml::from_str(text).map_err(|e| match nvgpu_agents(text) {
        Some(urls) => fail(None, nvgpu_hint(&urls)),
        None => fail(
            e.span(),
            format!(
                "{}; see examples/agents.toml for the format",
                e.message().trim_end()
            ),
        ),
    })?;
    let timeout = match &file.timeout {
        None => None,
        Some(t) => Some(
            gpusel_core::parse_duration_min(t.get_ref(), std::time::Duration::from_millis(1))
                .map_err(|_| {
                    fail(
                        Some(t.span()),
                        format!(
                            "timeout = {:?} is not a duration: give e.g. 1s or 500ms",
                            t.get_ref()
                        ),
                    )
                })?,
        ),
    };
    if file.agent.is_empty() {
        return Err(fail(
            None,
            "it lists no agent; add [[agent]] entries with url = \"http://HOST:PORT\" (or \"self\")"
                .into(),
        ));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut names = HashSet::new();
    let mut urls = HashSet::new();
    let mut nodes = Vec::new();
    for entry in &file.agent {
        let url = entry.url.get_ref().trim();
        let kind = match &entry.kind {
            None => Kind::Gpusel,
            Some(k) => match k.get_ref().trim() {
                "gpusel" => Kind::Gpusel,
                "nvgpu" => Kind::Nvgpu,
                other => {
                    return Err(fail(
                        Some(k.span()),
                        format!(
                            "kind = {other:?} is not a kind of agent: give \"gpusel\" (the default) or \"nvgpu\""
                        ),
                    ));
                }
            },
        };
        let source = if url.eq_ignore_ascii_case(SELF) {
            if let (Some(k), Kind::Nvgpu) = (&entry.kind, kind) {
                return Err(fail(
                    Some(k.span()),
                    "the self entry is this machine's GPUs, read in-process; drop its kind".into(),
                ));
            }
            if let Some(t) = &entry.token_file {
                return Err(fail(
                    Some(t.span()),
                    "the self entry is read in-process and takes no token_file".into(),
                ));
            }
            NodeSource::This
        } else {
            let endpoint =
                Endpoint::parse(url).map_err(|e| fail(Some(entry.url.span()), e.to_string()))?;
            let token = match &entry.token_file {
                None => None,
                Some(t) => Some(
                    Token::from_file(dir.join(t.get_ref()))
                        .map_err(|e| fail(Some(t.span()), e.to_string()))?,
                ),
            };
            NodeSource::Remote {
                endpoint,
                token,
                kind,
            }
        };
        let name = match (&entry.name, &source) {
            (Some(n), _) => n.get_ref().trim().to_string(),
            (None, NodeSource::This) => gpusel_core::host_name(),
            (None, NodeSource::Remote { endpoint, .. }) => default_name(endpoint),
        };
        let span = entry.name.as_ref().map_or(entry.url.span(), |n| n.span());
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(fail(
                Some(span),
                "a name needs at least one printable character".into(),
            ));
        }
        let spec = NodeSpec { name, source };
        if !urls.insert(spec.url().to_string()) {
            return Err(fail(
                Some(entry.url.span()),
                format!("{} is listed twice", spec.url()),
            ));
        }
        if !names.insert(spec.name.clone()) {
            return Err(fail(
                Some(span),
                format!(
                    "two agents are named {:?}; give one a name = \"...\" of its own",
                    spec.name
                ),
            ));
        }
        nodes.push(spec);
    }
    Ok(AgentsFile { nodes, timeout })
}

/// The agents of an nvgpu master config (`AGENTS = ['self',
/// 'http://node02:1080', ...]`, Python syntax), if `text` is one: the
/// quoted strings after `AGENTS =`, up to the closing bracket.
fn nvgpu_agents(text: &str) -> Option<Vec<String>> {
    let start = text.lines().scan(0, |at, line| {
        let here = *at;
        *at += line.len() + 1;
        Some((here, line))
    });
    let (at, _) = start
        .filter(|(_, l)| {
            let l = l.trim_start();
            l.strip_prefix("AGENTS")
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .last()?;
    let rest = text.get(at..)?;
    let list = rest.get(rest.find('[')? + 1..)?;
    let mut urls = Vec::new();
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            ']' => return Some(urls),
            '#' => {
                chars.by_ref().find(|&c| c == '\n');
            }
            '\'' | '"' => {
                let s: String = chars.by_ref().take_while(|&q| q != c).collect();
                urls.push(s);
            }
            _ => {}
        }
    }
    Some(urls)
}

/// What to write instead of an nvgpu `AGENTS` list.
fn nvgpu_hint(urls: &[String]) -> String {
    let mut toml = String::new();
    for url in urls {
        let url = gpusel_core::sanitize::clean(url.trim());
        if url.eq_ignore_ascii_case(SELF) {
            toml.push_str("\n[[agent]]\nurl = \"self\"\n");
        } else {
            toml.push_str(&format!("\n[[agent]]\nurl = {url:?}\nkind = \"nvgpu\"\n"));
        }
    }
    format!(
        "this is an nvgpu master config (AGENTS = [...]), not a gpusel agents file; gpusel reads nvgpu agents too: write this into a TOML file and give that to --agents (drop kind = \"nvgpu\" for agents that run `gpusel serve`):\n{toml}"
    )
}

/// The host of the URL, which is what people call their nodes.
fn default_name(endpoint: &Endpoint) -> String {
    endpoint.host().to_string()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> AgentsFile {
        parse(text, Path::new("/etc/gpusel/agents.toml")).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("/etc/gpusel/agents.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn names_default_to_the_host_and_order_is_kept() {
        let f = parse_ok(
            r#"
timeout = "750ms"
[[agent]]
url = "self"
name = "login"
[[agent]]
url = "http://gpu-node-1:9477/"
[[agent]]
url = "http://10.0.0.7:9477"
name = "big one"
[[agent]]
url = "http://[::1]:9477"
"#,
        );
        let got: Vec<(&str, &str)> = f.nodes.iter().map(|n| (n.name.as_str(), n.url())).collect();
        assert_eq!(
            got,
            [
                ("login", "self"),
                ("gpu-node-1", "http://gpu-node-1:9477"),
                ("big one", "http://10.0.0.7:9477"),
                ("[::1]", "http://[::1]:9477"),
            ]
        );
        assert_eq!(f.timeout, Some(Duration::from_millis(750)));
        assert!(f.has_self());
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let cases = [
            ("", "lists no agent"),
            (
                "[[agent]]\nurl = \"http://a:1\"\nport = 3\n",
                "line 3, column 1: unknown field `port`",
            ),
            ("[[agent]]\nname = \"x\"\n", "missing field `url`"),
            (
                "[[agent]]\nurl = \"https://a:1\"\n",
                "line 2, column 7: https://a:1: https is not supported",
            ),
            ("[[agent]]\nurl = \"a:1\"\n", "no http:// in front"),
            (
                "[[agent]]\nurl = \"http://a:1\"\n[[agent]]\nurl = \"http://a:1/\"\n",
                "line 4, column 7: http://a:1 is listed twice",
            ),
            (
                "[[agent]]\nurl = \"http://a:1\"\n[[agent]]\nurl = \"http://a:2\"\n",
                "two agents are named \"a\"",
            ),
            (
                "timeout = \"soon\"\n[[agent]]\nurl = \"self\"\n",
                "line 1, column 11: timeout = \"soon\" is not a duration",
            ),
            (
                "[[agent]]\nurl = \"self\"\ntoken_file = \"t\"\n",
                "takes no token_file",
            ),
            (
                "[[agent]]\nurl = \"http://a:1\"\ntoken_file = \"missing.token\"\n",
                "token file /etc/gpusel/missing.token: cannot read it",
            ),
        ];
        for (text, want) in cases {
            let e = parse_err(text);
            assert!(e.starts_with("agents file /etc/gpusel/agents.toml"), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn nvgpu_agents_are_a_kind() {
        let f = parse_ok(
            "[[agent]]\nurl = \"http://node02:1080\"\nkind = \"nvgpu\"\n[[agent]]\nurl = \"http://n3:9477\"\nkind = \"gpusel\"\n",
        );
        let kinds: Vec<Kind> = f
            .nodes
            .iter()
            .map(|n| match &n.source {
                NodeSource::Remote { kind, .. } => *kind,
                NodeSource::This => panic!("no self here"),
            })
            .collect();
        assert_eq!(kinds, [Kind::Nvgpu, Kind::Gpusel]);
        assert_eq!(f.nodes[0].name, "node02");
        let e = parse_err("[[agent]]\nurl = \"http://a:1\"\nkind = \"slurm\"\n");
        assert!(
            e.contains("line 3, column 8: kind = \"slurm\" is not a kind"),
            "{e}"
        );
        let e = parse_err("[[agent]]\nurl = \"self\"\nkind = \"nvgpu\"\n");
        assert!(e.contains("drop its kind"), "{e}");
    }

    #[test]
    fn an_nvgpu_config_gets_the_agents_file_to_write() {
        let nvgpu = "AGENTS = [\n         'self', # node01 - master - direct access without using HTTP\n         'http://node02:1080',\n         \"http://node03:1080\",\n]\n";
        let e = parse_err(nvgpu);
        assert!(e.contains("this is an nvgpu master config"), "{e}");
        let toml = e.split_once(":\n").expect("the file to write").1;
        assert_eq!(
            toml,
            "\n[[agent]]\nurl = \"self\"\n\n[[agent]]\nurl = \"http://node02:1080\"\nkind = \"nvgpu\"\n\n[[agent]]\nurl = \"http://node03:1080\"\nkind = \"nvgpu\"\n"
        );
        // What it says to write is an agents file that works.
        let f = parse_ok(toml);
        assert_eq!(f.nodes.len(), 3);
        assert!(f.has_self());
    }

    #[test]
    fn relative_token_files_are_next_to_the_agents_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n1.token"), "0123456789abcdef\n").unwrap();
        let path = dir.path().join("agents.toml");
        std::fs::write(
            &path,
            "[[agent]]\nurl = \"http://n1:9477\"\ntoken_file = \"n1.token\"\n",
        )
        .unwrap();
        let f = load(&path).unwrap();
        match &f.nodes[0].source {
            NodeSource::Remote { token: Some(t), .. } => {
                assert_eq!(t.path(), dir.path().join("n1.token"))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            load(&dir.path().join("nope.toml"))
                .unwrap_err()
                .to_string()
                .contains("cannot read it")
        );
    }

    #[test]
    fn the_example_in_examples_parses() {
        let text = include_str!("../../../examples/agents.toml");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(dir.path().join("tokens/node1.token"), "0123456789abcdef\n").unwrap();
        let f = parse(text, &dir.path().join("agents.toml")).unwrap();
        let urls: Vec<&str> = f.nodes.iter().map(NodeSpec::url).collect();
        assert_eq!(
            urls,
            [
                "self",
                "http://gpu-node-1:9477",
                "http://gpu-node-2:9477",
                "http://gateway.example.org:8080/gpus/node3",
                "http://node04:1080"
            ]
        );
        assert_eq!(f.nodes[2].name, "gpu-node-2");
        assert!(matches!(
            f.nodes[4].source,
            NodeSource::Remote {
                kind: Kind::Nvgpu,
                ..
            }
        ));
        assert_eq!(f.timeout, Some(Duration::from_secs(2)));
    }
}

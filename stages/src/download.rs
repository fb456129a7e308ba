//! The `download` kind: the four Fashion-MNIST files from the first source
//! that has them, each checked against its SHA-256.

use crate::{RunContext, StageError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Debian's `dataset-fashion-mnist` installs the files here.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// The canonical mirror.
pub const MIRROR: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

/// The Fashion-MNIST files and their SHA-256.
pub const FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    ),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadParams {
    /// Tried in order: local directories (or `file://` URLs) and
    /// `http://` / `https://` base URLs.
    #[serde(default = "default_sources")]
    pub sources: Vec<String>,
    /// File name -> expected SHA-256 (hex). Defaults to Fashion-MNIST's.
    #[serde(default = "default_files")]
    pub files: BTreeMap<String, String>,
    /// Seconds to wait for a connection or for data.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn default_sources() -> Vec<String> {
    vec![DEBIAN_DIR.to_string(), MIRROR.to_string()]
}

fn default_files() -> BTreeMap<String, String> {
    FILES
        .iter()
        .map(|(n, h)| (n.to_string(), h.to_string()))
        .collect()
}

fn default_timeout() -> u64 {
    30
}

impl Default for DownloadParams {
    fn default() -> Self {
        DownloadParams {
            sources: default_sources(),
            files: default_files(),
            timeout_s: default_timeout(),
        }
    }
}

/// Why one source could not provide one file.
#[derive(Debug)]
pub struct Attempt {
    pub source: String,
    pub why: String,
}

/// Why a file could not be fetched.
#[derive(Debug)]
pub enum FetchFailure {
    /// No source had it.
    NoSource(FetchError),
    /// It could not be written here (a full disk, permissions).
    Write { path: PathBuf, source: io::Error },
}

/// No source could provide a file.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.file, .attempts))]
pub struct FetchError {
    pub file: String,
    pub attempts: Vec<Attempt>,
}

fn render(file: &str, attempts: &[Attempt]) -> String {
    let mut s = format!("could not fetch {file} from any source:");
    for a in attempts {
        s.push_str(&format!("\n  - {}: {}", a.source, a.why));
    }
    s.push_str(&format!(
        "\n  help: install Debian's package (apt-get install dataset-fashion-mnist, which puts the files in {DEBIAN_DIR}), or add a directory or URL that has them under the download stage's params.sources in pipeline.yaml"
    ));
    s
}

impl crate::context::Params for DownloadParams {
    fn validate(&self) -> Result<(), String> {
        if self.sources.is_empty() {
            return Err("sources is empty: list at least one directory or URL".into());
        }
        if self.timeout_s == 0 {
            return Err("timeout_s must be at least 1".into());
        }
        match self
            .files
            .iter()
            .find(|(_, h)| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            Some((name, h)) => Err(format!(
                "files.{name}: `{h}` is not a SHA-256 (64 hexadecimal digits)"
            )),
            None => Ok(()),
        }
    }
}

pub fn run(ctx: &RunContext<'_>) -> Result<(), StageError> {
    let params: DownloadParams = crate::context::parse_params(ctx.params)?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(params.timeout_s))
        .timeout_read(Duration::from_secs(params.timeout_s))
        .build();
    let total = params.files.len();
    for (k, (name, sha)) in params.files.iter().enumerate() {
        (ctx.progress)(crate::Progress {
            step: crate::Step::Fetching { file: name.clone() },
            fraction: Some(k as f64 / total as f64),
        });
        let source = fetch(
            &agent,
            name,
            sha,
            &params.sources,
            ctx.out_dir,
            ctx.project_dir,
        )
        .map_err(|e| match e {
            FetchFailure::NoSource(e) => StageError::Failed(e.to_string()),
            FetchFailure::Write { path, source } => StageError::io("write", path, source),
        })?;
        (ctx.progress)(crate::Progress {
            step: crate::Step::Fetched {
                file: name.clone(),
                source: source.to_string(),
            },
            fraction: Some((k + 1) as f64 / total as f64),
        });
    }
    Ok(())
}

/// Fetches `name` into `out_dir` from the first source that has it with
/// the right checksum; returns that source.
pub fn fetch(
    agent: &ureq::Agent,
    name: &str,
    sha: &str,
    sources: &[String],
    out_dir: &Path,
    project_dir: &Path,
) -> Result<String, FetchFailure> {
    let mut attempts = Vec::new();
    let dest = out_dir.join(name);
    let partial = out_dir.join(format!(".{name}.partial"));
    for source in sources {
        let result = fetch_one(agent, source, name, &partial, project_dir).and_then(|got| {
            if got.eq_ignore_ascii_case(sha) {
                Ok(())
            } else {
                Err(SourceError::Source(format!(
                    "checksum mismatch: expected SHA-256 {sha}, got {got}"
                )))
            }
        });
        match result.and_then(|()| fs::rename(&partial, &dest).map_err(SourceError::Write)) {
            Ok(()) => return Ok(source.clone()),
            Err(SourceError::Source(why)) => {
                let _ = fs::remove_file(&partial);
                attempts.push(Attempt {
                    source: source.clone(),
                    why,
                });
            }
            Err(SourceError::Write(e)) => {
                let _ = fs::remove_file(&partial);
                return Err(FetchFailure::Write {
                    path: partial.clone(),
                    source: e,
                });
            }
        }
    }
    Err(FetchFailure::NoSource(FetchError {
        file: name.to_string(),
        attempts,
    }))
}

/// Why one source could not provide a file.
enum SourceError {
    /// This source failed; another may work.
    Source(String),
    /// Writing the file failed: no source can help.
    Write(io::Error),
}

impl From<String> for SourceError {
    fn from(s: String) -> Self {
        SourceError::Source(s)
    }
}

/// Streams one file from one source into `partial`, returning its SHA-256.
fn fetch_one(
    agent: &ureq::Agent,
    source: &str,
    name: &str,
    partial: &Path,
    project_dir: &Path,
) -> Result<String, SourceError> {
    let copy = |r: &mut dyn Read, what: &str| match copy_hashing(r, partial) {
        Ok(h) => Ok(h),
        Err(CopyError::Read(e)) => Err(SourceError::Source(format!("{what}: {e}"))),
        Err(CopyError::Write(e)) => Err(SourceError::Write(e)),
    };
    if source.starts_with("http://") || source.starts_with("https://") {
        let url = format!("{}/{name}", source.trim_end_matches('/'));
        let response = agent.get(&url).call().map_err(|e| match e {
            ureq::Error::Status(code, r) => format!("HTTP {code} {} for {url}", r.status_text()),
            ureq::Error::Transport(t) => format!("{t}"),
        })?;
        copy(
            &mut response.into_reader(),
            &format!("download of {url} failed"),
        )
    } else {
        let dir = source.strip_prefix("file://").unwrap_or(source);
        let mut path = PathBuf::from(dir);
        if path.is_relative() {
            path = project_dir.join(path);
        }
        let path = path.join(name);
        let mut file =
            File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        copy(&mut file, &format!("cannot read {}", path.display()))
    }
}

/// Why a copy stopped: the source (try the next one) or the destination
/// (no source can help: a full disk, permissions).
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_hashing(mut r: impl Read, dest: &Path) -> Result<String, CopyError> {
    let mut out = File::create(dest).map_err(CopyError::Write)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
    out.sync_all().map_err(CopyError::Write)?;
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::{TcpListener, TcpStream};

    /// A tiny HTTP/1.1 server on 127.0.0.1 serving canned answers by path.
    fn serve(routes: Vec<(&'static str, Reply)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let reply = routes
                    .iter()
                    .find(|(p, _)| path.ends_with(p))
                    .map(|(_, r)| r.clone())
                    .unwrap_or(Reply::NotFound);
                answer(stream, reply);
            }
        });
        format!("http://{addr}/data/")
    }

    #[derive(Clone)]
    enum Reply {
        Ok(Vec<u8>),
        NotFound,
        /// Announces the whole body, sends half of it, closes.
        Truncated(Vec<u8>),
    }

    fn answer(mut s: TcpStream, reply: Reply) {
        let _ = match reply {
            Reply::Ok(body) => {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(&body)
            }
            Reply::NotFound => write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
            Reply::Truncated(body) => {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(&body[..body.len() / 2])
            }
        };
    }

    fn agent() -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout_read(Duration::from_secs(5))
            .build()
    }

    fn refused_url() -> String {
        // Bind, learn the port, close: nothing listens there any more.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}/")
    }

    #[test]
    fn good_download() {
        let body = b"hello fashion".to_vec();
        let url = serve(vec![("a.gz", Reply::Ok(body.clone()))]);
        let out = tempfile::tempdir().unwrap();
        let src = fetch(
            &agent(),
            "a.gz",
            &sha256_hex(&body),
            std::slice::from_ref(&url),
            out.path(),
            out.path(),
        )
        .unwrap();
        assert_eq!(src, url);
        assert_eq!(fs::read(out.path().join("a.gz")).unwrap(), body);
        assert_eq!(
            fs::read_dir(out.path()).unwrap().count(),
            1,
            "no partial file left"
        );
    }

    #[test]
    fn every_failure_is_listed_and_nothing_partial_remains() {
        let body = b"0123456789abcdef".to_vec();
        let not_found = serve(vec![]);
        let truncated = serve(vec![("a.gz", Reply::Truncated(body.clone()))]);
        let wrong = serve(vec![("a.gz", Reply::Ok(b"other bytes".to_vec()))]);
        let refused = refused_url();
        let out = tempfile::tempdir().unwrap();
        let missing_dir = out.path().join("nope").display().to_string();
        let sources = vec![
            missing_dir.clone(),
            not_found,
            refused.clone(),
            truncated,
            wrong,
        ];
        let e = fetch(
            &agent(),
            "a.gz",
            &sha256_hex(&body),
            &sources,
            out.path(),
            out.path(),
        )
        .unwrap_err();
        let FetchFailure::NoSource(e) = e else {
            panic!("{e:?}")
        };
        let text = e.to_string();
        assert_eq!(e.attempts.len(), 5, "{text}");
        assert!(e.attempts[0].why.contains("No such file"), "{text}");
        assert!(e.attempts[1].why.contains("HTTP 404"), "{text}");
        assert!(
            e.attempts[2].why.to_lowercase().contains("refused"),
            "{text}"
        );
        // A body cut short is an error of its own or, at the latest, a checksum mismatch.
        assert!(!e.attempts[3].why.is_empty(), "{text}");
        assert!(
            e.attempts[4].why.contains("checksum mismatch")
                && e.attempts[4].why.contains(&sha256_hex(b"other bytes")),
            "{text}"
        );
        assert!(
            text.contains("apt-get install dataset-fashion-mnist"),
            "{text}"
        );
        assert_eq!(
            fs::read_dir(out.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }

    #[test]
    fn falls_back_to_the_next_source_and_reads_local_directories() {
        let body = b"local bytes".to_vec();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.gz"), &body).unwrap();
        let out = tempfile::tempdir().unwrap();
        let sources = vec![refused_url(), format!("file://{}", dir.path().display())];
        let src = fetch(
            &agent(),
            "a.gz",
            &sha256_hex(&body),
            &sources,
            out.path(),
            out.path(),
        )
        .unwrap();
        assert!(src.starts_with("file://"));
        assert_eq!(fs::read(out.path().join("a.gz")).unwrap(), body);
    }

    #[test]
    fn truncated_body_alone_fails() {
        let body = vec![7u8; 10_000];
        let url = serve(vec![("a.gz", Reply::Truncated(body.clone()))]);
        let out = tempfile::tempdir().unwrap();
        assert!(fetch(
            &agent(),
            "a.gz",
            &sha256_hex(&body),
            &[url],
            out.path(),
            out.path()
        )
        .is_err());
        assert!(!out.path().join("a.gz").exists());
    }
}

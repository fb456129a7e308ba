//! `serve`: the runs' pages over HTTP, read-only, with live updates as
//! server-sent events. Requests map to files by an allow-list: `/`, and
//! `/runs/<run>/`, `/runs/<run>/page` and `/runs/<run>/events` where
//! `<run>` is a run directory's name as the tool makes them; nothing is
//! ever joined from a request's path, nothing is decoded, and a run
//! directory that is a link, or leads out of the cache, is refused.

use super::state::{Change, RunState};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections served at once; more wait in the listen queue.
const CONNECTIONS: usize = 256;
/// How often a followed run's events file is looked at.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// A comment line keeps idle connections through proxies and tunnels.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// What the server shows: a project's runs.
#[derive(Clone)]
pub struct Site {
    /// The project's home in the cache (its `live/` holds the runs).
    pub home: PathBuf,
    /// The runs in the history: (id, when, run directory name).
    pub history: Vec<(u64, String, Option<String>)>,
}

/// Serves until the process is stopped.
pub fn serve(listener: TcpListener, site: Site) -> std::io::Result<()> {
    let site = Arc::new(site);
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        while open.load(Ordering::Acquire) >= CONNECTIONS {
            std::thread::sleep(Duration::from_millis(20));
        }
        open.fetch_add(1, Ordering::AcqRel);
        let (site, mine) = (site.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("serve".into())
            .spawn(move || {
                let _ = handle(stream, &site);
                mine.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::AcqRel);
        }
    }
    Ok(())
}

/// A request's method, target and the one header that matters.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub last_event_id: Option<u64>,
}

pub fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut first = String::new();
    r.take(8192).read_line(&mut first).ok()?;
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut last_event_id = None;
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = r.take(8192).read_line(&mut line).ok()?;
        total += n;
        if n == 0 || line.trim().is_empty() || total > 64 * 1024 {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("last-event-id") {
                last_event_id = v.trim().parse().ok();
            }
        }
    }
    Some(Request {
        method,
        target,
        last_event_id,
    })
}

/// What a request's target names.
#[derive(Debug, PartialEq)]
pub enum Route {
    Index,
    /// `/runs/<run>` without its slash: where the page's own links work.
    Slash(String),
    Page(String),
    Events(String),
    NotFound,
}

/// Maps a request's target by the allow-list; the query is ignored.
pub fn route(target: &str) -> Route {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if path == "/" {
        return Route::Index;
    }
    let Some(rest) = path.strip_prefix("/runs/") else {
        return Route::NotFound;
    };
    let (name, what) = match rest.split_once('/') {
        Some(p) => p,
        None if super::is_run_name(rest) => return Route::Slash(rest.to_string()),
        None => return Route::NotFound,
    };
    if !super::is_run_name(name) {
        return Route::NotFound;
    }
    match what {
        "" | "page" => Route::Page(name.to_string()),
        "events" => Route::Events(name.to_string()),
        _ => Route::NotFound,
    }
}

impl Site {
    /// A run's directory: a real directory under the cache's `live/`,
    /// not a link, and not leading elsewhere.
    pub fn run_dir(&self, name: &str) -> Option<PathBuf> {
        let root = self.home.join(super::RUNS);
        let dir = root.join(name);
        let meta = std::fs::symlink_metadata(&dir).ok()?;
        if !meta.is_dir() {
            return None;
        }
        let (real, root) = (dir.canonicalize().ok()?, root.canonicalize().ok()?);
        (real.parent() == Some(root.as_path())).then_some(dir)
    }
}

fn handle(stream: TcpStream, site: &Site) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let Some(req) = read_request(&mut reader) else {
        return respond(&mut out, 400, "text/plain", b"bad request\n", false);
    };
    let head = req.method == "HEAD";
    if req.method != "GET" && !head {
        // Read-only: nothing a request says changes anything.
        return respond(&mut out, 405, "text/plain", b"only GET and HEAD\n", head);
    }
    match route(&req.target) {
        Route::Index => {
            let body = index(site);
            respond(
                &mut out,
                200,
                "text/html; charset=utf-8",
                body.as_bytes(),
                head,
            )
        }
        Route::Slash(name) => {
            write!(
                out,
                "HTTP/1.1 301 Moved Permanently\r\nLocation: /runs/{name}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            out.flush()
        }
        Route::Page(name) => match site.run_dir(&name).and_then(|d| page(&d)) {
            Some(body) => respond(
                &mut out,
                200,
                "text/html; charset=utf-8",
                body.as_bytes(),
                head,
            ),
            None => not_found(&mut out, head),
        },
        Route::Events(name) => match site.run_dir(&name) {
            Some(dir) if !head => follow(&mut out, &dir, req.last_event_id.unwrap_or(0)),
            Some(_) => respond(&mut out, 200, "text/event-stream", b"", true),
            None => not_found(&mut out, head),
        },
        Route::NotFound => not_found(&mut out, head),
    }
}

fn not_found(out: &mut TcpStream, head: bool) -> std::io::Result<()> {
    respond(out, 404, "text/plain", b"not found\n", head)
}

fn respond(
    out: &mut TcpStream,
    code: u16,
    kind: &str,
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head {
        out.write_all(body)?;
    }
    out.flush()
}

fn read_state(dir: &Path) -> Option<RunState> {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()
}

fn page(dir: &Path) -> Option<String> {
    let state = read_state(dir)?;
    Some(super::page::render(dir, &state, super::page::Mode::Served))
}

/// The run's changes from byte `from` of its events file, as they come,
/// until the run has ended; each event's id is the offset after it, so a
/// browser that reconnects (sending `Last-Event-ID`) misses nothing.
fn follow(out: &mut TcpStream, dir: &Path, mut from: u64) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nretry: 1000\n\n"
    )?;
    out.flush()?;
    let path = dir.join("events.jsonl");
    let mut quiet = Instant::now();
    loop {
        let ended = read_state(dir).is_some_and(|s| s.ended.is_some());
        let mut sent = false;
        if let Ok(mut f) = std::fs::File::open(&path) {
            let len = f.metadata()?.len();
            if len > from {
                f.seek(SeekFrom::Start(from))?;
                let mut buf = Vec::new();
                f.take(len - from).read_to_end(&mut buf)?;
                // Whole lines only: a torn last one waits.
                let whole = buf.iter().rposition(|&b| b == b'\n').map_or(0, |k| k + 1);
                for line in buf[..whole]
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    from += line.len() as u64 + 1;
                    let Ok(c) = serde_json::from_slice::<Change>(line) else {
                        continue;
                    };
                    let kind = if c.stage.is_none() && c.what.starts_with("run ") {
                        "end"
                    } else {
                        "change"
                    };
                    let data = serde_json::to_string(&c).unwrap_or_default();
                    write!(out, "id: {from}\nevent: {kind}\ndata: {data}\n\n")?;
                    sent = true;
                }
            }
        }
        if sent {
            out.flush()?;
            quiet = Instant::now();
        } else if ended {
            return Ok(());
        } else if quiet.elapsed() > KEEPALIVE {
            out.write_all(b": still running\n\n")?;
            out.flush()?;
            quiet = Instant::now();
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}

/// The runs, newest first, with what the history says of each.
fn index(site: &Site) -> String {
    use stages::html::escape;
    use std::fmt::Write;
    let mut h = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fmnist-pipe runs</title>\
         <style>body{font:14px system-ui,sans-serif;max-width:900px;margin:20px auto}table{border-collapse:collapse;width:100%}\
         td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #eee}</style></head><body><h1>Runs</h1>\
         <table id=\"runs\"><thead><tr><th>run</th><th>history</th><th>state</th><th>stages</th></tr></thead><tbody>",
    );
    for name in super::runs(&site.home) {
        let Some(dir) = site.run_dir(&name) else {
            continue;
        };
        let state = read_state(&dir);
        let how = state.as_ref().map_or("unreadable".to_string(), |s| {
            s.ended.as_ref().map_or("running".into(), |e| e.how.clone())
        });
        let id = site
            .history
            .iter()
            .find(|(_, _, live)| live.as_deref() == Some(name.as_str()))
            .map_or(String::new(), |(id, when, _)| {
                format!("#{id} ({})", escape(when))
            });
        let _ = write!(
            h,
            "<tr><td><a href=\"/runs/{n}/\">{n}</a></td><td>{id}</td><td>{}</td><td>{}</td></tr>",
            escape(&how),
            state.map_or(0, |s| s.stages.len()),
            n = escape(&name)
        );
    }
    h.push_str("</tbody></table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allowed_paths_are_routed() {
        let run = "20261208T101500Z-42";
        assert_eq!(route("/"), Route::Index);
        assert_eq!(route(&format!("/runs/{run}/")), Route::Page(run.into()));
        assert_eq!(
            route(&format!("/runs/{run}/page?x=1")),
            Route::Page(run.into())
        );
        assert_eq!(
            route(&format!("/runs/{run}/events")),
            Route::Events(run.into())
        );
        assert_eq!(route(&format!("/runs/{run}")), Route::Slash(run.into()));
        for bad in [
            "/runs/../../etc/passwd",
            "/runs/%2e%2e/%2e%2e/etc/passwd",
            "/runs/%2E%2E%2Fhistory.jsonl/",
            "/../cache/history.jsonl",
            "//etc/passwd",
            "/etc/passwd",
            "http://127.0.0.1/runs/20261208T101500Z-42/",
            "/runs/20261208T101500Z-42/../../lock",
            "/runs/20261208T101500Z-42/state.json",
            "/runs/20261208T101500Z-42/stages/a.jsonl",
            "/runs/20261208T101500Z-42%2f..%2f..",
            "",
        ] {
            assert_eq!(route(bad), Route::NotFound, "{bad}");
        }
    }

    #[test]
    fn a_request_head_is_read_with_its_last_event_id() {
        let text = "GET /runs/x/events HTTP/1.1\r\nHost: a\r\nLast-Event-ID: 123\r\n\r\n";
        let r = read_request(&mut text.as_bytes()).unwrap();
        assert_eq!(r.target, "/runs/x/events");
        assert_eq!(r.last_event_id, Some(123));
        assert_eq!(read_request(&mut "".as_bytes()), None);
    }

    #[test]
    fn a_run_directory_that_is_a_link_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let live = home.path().join(super::super::RUNS);
        std::fs::create_dir_all(live.join("20261208T101500Z-1")).unwrap();
        std::os::unix::fs::symlink(outside.path(), live.join("20261208T101500Z-2")).unwrap();
        let site = Site {
            home: home.path().to_path_buf(),
            history: vec![],
        };
        assert!(site.run_dir("20261208T101500Z-1").is_some());
        assert_eq!(site.run_dir("20261208T101500Z-2"), None);
        assert_eq!(site.run_dir("20261208T101500Z-3"), None);
    }
}

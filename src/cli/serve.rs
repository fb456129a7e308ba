//! `serve`: the project's runs, live, over HTTP on this machine.

use crate::error::{exit, Error, Result};
use crate::spec::Pipeline;
use crate::state::history;
use crate::state::store::Store;
use crate::ui::reporter::Reporter;

pub fn run(pipeline: &Pipeline, reporter: &mut Reporter, bind: &str, port: u16) -> Result<i32> {
    let store = Store::open(&pipeline.settings);
    let (runs, _) = history::recent(&history::path(pipeline), usize::MAX)?;
    let site = crate::live::serve::Site {
        home: store.home().to_path_buf(),
        history: runs.into_iter().map(|r| (r.id, r.when, r.live)).collect(),
    };
    let listener = std::net::TcpListener::bind((bind, port)).map_err(|e| {
        Error::Usage(format!(
            "cannot listen on {bind}:{port} ({e}); choose another port with --port"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("read the address listened on", bind, e))?;
    reporter.serving(&addr);
    crate::live::serve::serve(listener, site)
        .map_err(|e| Error::io("serve", addr.to_string(), e))?;
    Ok(exit::OK)
}

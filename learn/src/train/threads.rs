//! The threads a training runs on, grown when a core comes free.

use std::path::Path;

/// The threads a training runs on: its caller's pool, until the
/// orchestrator gives it more (a core that came free): then a pool of
/// that many, for the epochs after.
pub struct Threads<'a> {
    /// The threads it runs on now.
    pub now: usize,
    /// Where a larger count is written when a core comes free.
    pub grow: Option<&'a Path>,
    pool: Option<rayon::ThreadPool>,
}

impl<'a> Threads<'a> {
    /// `now` threads, taking up more when `grow` says.
    pub fn new(now: usize, grow: Option<&'a Path>) -> Threads<'a> {
        Threads {
            now,
            grow,
            pool: None,
        }
    }

    /// The larger count the orchestrator wrote, once, as a new pool.
    /// Never grows: a device that must stay on its thread (a GPU's).
    pub(crate) fn fixed(&mut self) {
        self.grow = None;
    }

    pub fn grown(&mut self) -> Option<usize> {
        let n: usize = std::fs::read_to_string(self.grow?)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if n <= self.now {
            return None;
        }
        self.pool = Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .ok()?,
        );
        self.now = n;
        Some(n)
    }

    /// Runs `f` on the grown pool, if there is one, else right here.
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Carries a training's epoch to the grown pool's thread and back.
        struct Carried<T>(T);
        // SAFETY: a pool exists only after `grown`, which needs `grow`,
        // which `fit` clears for any device but the CPU (`Backend::FAST`):
        // what is carried is a CPU training's state (plain vectors and
        // dfdx's CPU device, which are Send), and `install` blocks until
        // `f` has returned.
        unsafe impl<T> Send for Carried<T> {}
        match &self.pool {
            Some(pool) => {
                let f = Carried(f);
                let out = pool.install(move || {
                    let f = f;
                    Carried((f.0)())
                });
                out.0
            }
            None => f(),
        }
    }
}

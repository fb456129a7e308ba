//! Which ready stages start now, and with how many cores, which GPUs and
//! how much memory. The policy, in full:
//!
//! - A stage that declares `resources.cpus` gets that many cores (at most
//!   the budget, `--jobs`); a kind that uses one thread (`cmd`, `download`,
//!   `preprocess`, `compare`) gets one.
//! - A `train` or `evaluate` stage that declares no cores shares what is
//!   free evenly with the other such stages ready at the same moment: one
//!   alone gets every free core, two on two cores get one each. Two
//!   trainings at one thread each do more work together than one at two
//!   threads, and results do not depend on the thread count. A stage keeps
//!   the cores it started with.
//! - `gpus: N` takes N of the visible GPUs (CUDA_VISIBLE_DEVICES, else the
//!   driver's list); the stage sees only those.
//! - `mem_mb` counts against the memory available when the run began; a
//!   stage that does not fit waits, unless nothing else runs.
//! - Stages are considered in dependency order, trainings after every
//!   other kind (the run's board orders them so); a later one may start
//!   while an earlier one waits for a bigger share.

use std::collections::BTreeSet;

/// What one ready stage asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Declared cores; `None`: one, or a share for a parallel kind.
    pub cpus: Option<usize>,
    pub parallel: bool,
    pub gpus: usize,
    pub mem_mb: Option<u64>,
}

/// What a started stage holds until it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub cpus: usize,
    pub gpus: Vec<String>,
    pub mem_mb: u64,
    /// Counts against a job limit rather than cores (the Slurm executor).
    slot: bool,
}

/// The resources of this run.
#[derive(Debug)]
pub struct Pool {
    kind: PoolKind,
    free_cpus: usize,
    gpus: Vec<String>,
    /// Indices into `gpus`: handed out lowest first, whatever the order
    /// they came back in.
    free_gpus: BTreeSet<usize>,
    free_mem: Option<u64>,
    running: usize,
}

#[derive(Debug)]
enum PoolKind {
    /// Cores, GPUs and memory of this machine.
    Local {
        cpus: usize,
        gpus: usize,
        mem_total: Option<u64>,
    },
    /// A number of jobs submitted at once (counted in `free_cpus`); the
    /// cluster places them.
    Jobs,
}

impl Pool {
    pub fn local(cpus: usize, gpus: Vec<String>, mem: Option<Memory>) -> Self {
        Pool {
            kind: PoolKind::Local {
                cpus: cpus.max(1),
                gpus: gpus.len(),
                mem_total: mem.map(|m| m.total_mb),
            },
            free_cpus: cpus.max(1),
            free_gpus: (0..gpus.len()).collect(),
            gpus,
            free_mem: mem.map(|m| m.available_mb),
            running: 0,
        }
    }

    /// A pool for an executor that places stages itself.
    pub fn jobs(max: usize) -> Self {
        Pool {
            kind: PoolKind::Jobs,
            free_cpus: max.max(1),
            gpus: Vec::new(),
            free_gpus: BTreeSet::new(),
            free_mem: None,
            running: 0,
        }
    }

    /// Why `d` can never be met here, if it cannot.
    pub fn impossible(&self, d: &Demand) -> Option<String> {
        let PoolKind::Local {
            gpus, mem_total, ..
        } = self.kind
        else {
            return None;
        };
        if d.gpus > gpus {
            return Some(format!(
                "it asks for {} GPU{} and this machine shows {gpus}",
                d.gpus,
                if d.gpus == 1 { "" } else { "s" }
            ));
        }
        match (d.mem_mb, mem_total) {
            (Some(m), Some(t)) if m > t => Some(format!(
                "it asks for {m} MB of memory and this machine has {t} MB"
            )),
            _ => None,
        }
    }

    /// Starts what fits of the ready queue, reading it only as far as
    /// something can still start (a run of thousands of ready stages would
    /// otherwise read them all after each stage that ends).
    pub fn admit_queue(&mut self, q: &Ready) -> Vec<(usize, Grant)> {
        let with = |&(_, i): &(usize, usize)| (i, q.demands[i].clone());
        match self.kind {
            // Slots in priority order: the first ones fill them.
            PoolKind::Jobs => {
                let first: Vec<(usize, Demand)> =
                    q.all.iter().take(self.free_cpus).map(with).collect();
                self.admit(&first)
            }
            PoolKind::Local { .. } => self.admit_in_order(q.all.iter().map(with), q.all.len()),
        }
    }

    /// Starts what fits of `ready` (indices with their demands, in
    /// priority order): the indices started and what each holds.
    pub fn admit(&mut self, ready: &[(usize, Demand)]) -> Vec<(usize, Grant)> {
        let mut out = Vec::new();
        if let PoolKind::Jobs = self.kind {
            for (i, d) in ready {
                if self.free_cpus == 0 {
                    break;
                }
                self.free_cpus -= 1;
                self.running += 1;
                out.push((
                    *i,
                    Grant {
                        cpus: d.cpus.unwrap_or(1),
                        gpus: Vec::new(),
                        mem_mb: 0,
                        slot: true,
                    },
                ));
            }
            return out;
        }
        out.extend(self.admit_in_order(ready.iter().cloned(), ready.len()));
        out
    }

    /// Whether anything could start now: every stage takes a core (a
    /// slot, for a job pool), so with none free `admit` starts nothing.
    /// The ready stages in their order (a finished training's evaluation
    /// before a training not yet started, whatever their demands): each
    /// with its fixed cores, or an even share of the free ones among the
    /// `ready` stages that can start.
    fn admit_in_order(
        &mut self,
        ready: impl Iterator<Item = (usize, Demand)>,
        count: usize,
    ) -> Vec<(usize, Grant)> {
        let total = match self.kind {
            PoolKind::Local { cpus, .. } => cpus,
            PoolKind::Jobs => self.free_cpus,
        };
        let mut out = Vec::new();
        let mut n = count.min(self.free_cpus);
        for (i, d) in ready {
            if self.free_cpus == 0 || n == 0 {
                break;
            }
            if !self.fits(&d) {
                continue;
            }
            let cpus = if flexible(&d) {
                self.free_cpus.div_ceil(n)
            } else {
                d.cpus.unwrap_or(1).min(total)
            };
            if cpus <= self.free_cpus {
                out.push((i, self.take(cpus, &d)));
                n -= 1;
            }
        }
        out
    }

    pub fn has_room(&self) -> bool {
        self.free_cpus > 0
    }

    /// Cores free on this machine (none for a pool of jobs: a job's
    /// cores are its scheduler's).
    pub fn free_cores(&self) -> usize {
        match self.kind {
            PoolKind::Local { .. } => self.free_cpus,
            PoolKind::Jobs => 0,
        }
    }

    /// Gives a running stage's grant `extra` more of the free cores.
    pub fn grow(&mut self, g: &mut Grant, extra: usize) {
        let extra = extra.min(self.free_cores());
        self.free_cpus -= extra;
        g.cpus += extra;
    }

    pub fn release(&mut self, g: Grant) {
        self.running -= 1;
        self.free_cpus += if g.slot { 1 } else { g.cpus };
        for id in g.gpus {
            if let Some(i) = self.gpus.iter().position(|x| *x == id) {
                self.free_gpus.insert(i);
            }
        }
        if let Some(m) = self.free_mem.as_mut() {
            *m += g.mem_mb;
        }
    }

    fn fits(&self, d: &Demand) -> bool {
        let mem = match (d.mem_mb, self.free_mem) {
            (Some(m), Some(free)) => m <= free || self.running == 0,
            _ => true,
        };
        d.gpus <= self.free_gpus.len() && mem
    }

    fn take(&mut self, cpus: usize, d: &Demand) -> Grant {
        self.free_cpus -= cpus;
        self.running += 1;
        let mem_mb = match (d.mem_mb, self.free_mem.as_mut()) {
            (Some(m), Some(free)) => {
                let m = m.min(*free);
                *free -= m;
                m
            }
            _ => 0,
        };
        Grant {
            cpus,
            gpus: (0..d.gpus)
                .filter_map(|_| self.free_gpus.pop_first())
                .map(|i| self.gpus[i].clone())
                .collect(),
            mem_mb,
            slot: false,
        }
    }
}

fn flexible(d: &Demand) -> bool {
    d.cpus.is_none() && d.parallel
}

/// The stages ready to start, by priority (their place in dependency
/// order); admitting reads them in that order until the cores are out.
pub struct Ready {
    demands: Vec<Demand>,
    all: BTreeSet<(usize, usize)>,
}

impl Ready {
    /// An empty queue for stages with these demands (by stage index).
    pub fn new(demands: Vec<Demand>) -> Self {
        Ready {
            demands,
            all: BTreeSet::new(),
        }
    }

    pub fn demand(&self, i: usize) -> &Demand {
        &self.demands[i]
    }

    pub fn insert(&mut self, pos: usize, i: usize) {
        self.all.insert((pos, i));
    }

    pub fn contains(&self, pos: usize, i: usize) -> bool {
        self.all.contains(&(pos, i))
    }

    pub fn remove(&mut self, pos: usize, i: usize) {
        self.all.remove(&(pos, i));
    }
}

/// This machine's memory, from /proc/meminfo.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub total_mb: u64,
    pub available_mb: u64,
}

impl Memory {
    pub fn read() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kb| kb / 1024)
        };
        Some(Memory {
            total_mb: field("MemTotal:")?,
            available_mb: field("MemAvailable:")?,
        })
    }
}

/// The GPUs stages may be given: CUDA_VISIBLE_DEVICES when set (as the
/// user narrowed it), else every GPU the NVIDIA driver lists.
pub fn visible_gpus() -> Vec<String> {
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => {
            let n = std::fs::read_dir("/proc/driver/nvidia/gpus").map_or(0, |d| d.count());
            (0..n).map(|i| i.to_string()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share() -> Demand {
        Demand {
            cpus: None,
            parallel: true,
            gpus: 0,
            mem_mb: None,
        }
    }
    fn one() -> Demand {
        Demand {
            parallel: false,
            ..share()
        }
    }
    fn cpus(g: &[(usize, Grant)]) -> Vec<(usize, usize)> {
        g.iter().map(|(i, g)| (*i, g.cpus)).collect()
    }

    #[test]
    fn ready_trainings_share_the_cores() {
        let mut p = Pool::local(2, vec![], None);
        let ready: Vec<_> = (0..8).map(|i| (i, share())).collect();
        let g = p.admit(&ready);
        assert_eq!(cpus(&g), [(0, 1), (1, 1)], "two at one thread each");
        assert!(p.admit(&ready[2..]).is_empty(), "nothing is left");
        let (_, first) = g.into_iter().next().unwrap();
        p.release(first);
        assert_eq!(cpus(&p.admit(&ready[2..])), [(2, 1)]);
    }

    #[test]
    fn a_lone_training_gets_every_core_and_odd_cores_go_first_come() {
        let mut p = Pool::local(2, vec![], None);
        assert_eq!(cpus(&p.admit(&[(4, share())])), [(4, 2)]);
        let mut p = Pool::local(3, vec![], None);
        assert_eq!(
            cpus(&p.admit(&[(0, share()), (1, share())])),
            [(0, 2), (1, 1)]
        );
    }

    #[test]
    fn declared_cores_are_held_and_capped_at_the_budget() {
        let mut p = Pool::local(4, vec![], None);
        let fixed = |c| Demand {
            cpus: Some(c),
            ..share()
        };
        // In order: the share takes its part of the four cores, the stage
        // that needs three waits for them, the one-core stage starts.
        let g = p.admit(&[(0, share()), (1, fixed(3)), (2, one())]);
        assert_eq!(cpus(&g), [(0, 2), (2, 1)]);
        let g = p.admit(&[(1, fixed(3))]);
        assert!(g.is_empty(), "one core is free");
        let mut p = Pool::local(2, vec![], None);
        assert_eq!(cpus(&p.admit(&[(0, fixed(16))])), [(0, 2)]);
    }

    #[test]
    fn gpus_are_handed_out_and_given_back() {
        let mut p = Pool::local(8, vec!["0".into(), "1".into(), "2".into()], None);
        let gpu = |n| Demand { gpus: n, ..one() };
        assert!(p.impossible(&gpu(4)).unwrap().contains("shows 3"));
        let g = p.admit(&[(0, gpu(2)), (1, gpu(2)), (2, gpu(1))]);
        let held: Vec<_> = g.iter().map(|(i, g)| (*i, g.gpus.join(","))).collect();
        assert_eq!(held, [(0, "0,1".to_string()), (2, "2".to_string())]);
        for (_, g) in g {
            p.release(g);
        }
        assert_eq!(p.admit(&[(1, gpu(2))])[0].1.gpus.len(), 2);
    }

    #[test]
    fn memory_waits_unless_nothing_runs() {
        let mem = Memory {
            total_mb: 10_000,
            available_mb: 3_000,
        };
        let mut p = Pool::local(4, vec![], Some(mem));
        let m = |mb| Demand {
            mem_mb: Some(mb),
            ..one()
        };
        assert!(p.impossible(&m(20_000)).unwrap().contains("has 10000 MB"));
        let g = p.admit(&[(0, m(2_000)), (1, m(2_000))]);
        assert_eq!(
            cpus(&g),
            [(0, 1)],
            "the second does not fit beside the first"
        );
        p.release(g.into_iter().next().unwrap().1);
        let mut p = Pool::local(4, vec![], Some(mem));
        assert_eq!(cpus(&p.admit(&[(0, m(5_000))])), [(0, 1)], "alone, it runs");
    }

    #[test]
    fn a_job_pool_counts_jobs_not_cores() {
        let mut p = Pool::jobs(2);
        let g = p.admit(&[
            (
                0,
                Demand {
                    cpus: Some(8),
                    ..share()
                },
            ),
            (1, share()),
            (2, share()),
        ]);
        assert_eq!(cpus(&g), [(0, 8), (1, 1)]);
        assert!(p.impossible(&Demand { gpus: 4, ..one() }).is_none());
    }

    /// Reading the queue only as far as something can start admits what
    /// admitting from the whole list does, on any mix of demands.
    #[test]
    fn the_queue_admits_what_the_whole_list_does() {
        let kinds = [
            share(),
            one(),
            Demand {
                cpus: Some(2),
                ..one()
            },
            Demand {
                cpus: Some(3),
                ..share()
            },
            Demand {
                mem_mb: Some(700),
                ..share()
            },
            Demand { gpus: 1, ..one() },
        ];
        let mut seed = 7u64;
        let mut next = |m: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % m
        };
        for round in 0..300 {
            let n = 1 + next(12);
            let demands: Vec<Demand> = (0..n).map(|_| kinds[next(kinds.len())].clone()).collect();
            let cores = 1 + next(6);
            let make = || {
                if round % 5 == 0 {
                    Pool::jobs(cores)
                } else {
                    Pool::local(
                        cores,
                        vec!["0".into()],
                        Some(Memory {
                            total_mb: 2000,
                            available_mb: 1000,
                        }),
                    )
                }
            };
            let (mut a, mut b) = (make(), make());
            // Some cores already taken.
            let busy = vec![(99, one())];
            a.admit(&busy);
            b.admit(&busy);
            // Priority order differs from the index order.
            let order: Vec<usize> = (0..n).rev().collect();
            let whole: Vec<(usize, Demand)> =
                order.iter().map(|&i| (i, demands[i].clone())).collect();
            let mut q = Ready::new(demands.clone());
            for (pos, &i) in order.iter().enumerate() {
                q.insert(pos, i);
            }
            let (ga, gb) = (a.admit(&whole), b.admit_queue(&q));
            assert_eq!(ga, gb, "round {round}: {demands:?} on {cores} cores");
        }
    }
}

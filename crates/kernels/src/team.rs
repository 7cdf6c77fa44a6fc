//! A small fixed team of threads that split one kernel call between them, for the model thread.
//!
//! Why not rayon: a forward pass makes ~30 parallel calls of 30-300 µs each. Rayon parks idle workers on a
//! futex, and waking one costs 5-20 µs of scheduler work per call (a quarter of the time at one query in
//! our profiles). Team helpers instead spin for a short while after each call, so the next call of the same
//! forward pass finds them awake, and park only when the model goes idle. The caller always takes part 0.
//!
//! Kernels find the team through a thread-local set by [`Team::install`]; without one (or inside a task) they
//! run on the calling thread.

use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a helper keeps spinning for the next call before it parks. Longer than the gap between two
/// kernel calls of one forward pass, short enough that an idle service does not burn a core.
const SPIN: Duration = Duration::from_micros(500);

/// How long a helper spins without yielding after a call: the gaps between the kernel calls of one
/// forward pass (a layer norm, a quantisation: 1-3 µs) are shorter than a `sched_yield`, and a helper that
/// is inside one when the next call is published starts late, which the caller then waits out at the end.
const TIGHT_SPIN: Duration = Duration::from_micros(50);

/// Spins of the caller waiting for its helpers before it starts yielding the core (about 10 µs).
const YIELD_AFTER: u32 = 2_000;

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    threads: usize,
    /// Bumped once per call; helpers start work when they see it change.
    epoch: AtomicUsize,
    /// The call's work, valid while `pending > 0` (the caller waits for that before returning).
    job: UnsafeCell<Option<Job>>,
    pending: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the (single) caller before it publishes the epoch with release
// ordering and read by helpers after they observe the epoch with acquire ordering; the caller does not
// return, and so does not invalidate the closure, until every helper has finished with it.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A team of `threads` (the caller plus `threads - 1` helper threads).
pub struct Team {
    shared: Arc<Shared>,
    /// Serialises callers: one call at a time uses the helpers; a concurrent one runs alone.
    busy: Mutex<()>,
    helpers: Vec<std::thread::JoinHandle<()>>,
}

thread_local! {
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

impl Team {
    /// Starts `threads - 1` helper threads named `{name}-{i}`.
    pub fn new(threads: usize, name: &str) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            threads,
            epoch: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut helpers = Vec::with_capacity(threads - 1);
        for i in 1..threads {
            let s = shared.clone();
            helpers.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || helper(&s, i))?,
            );
        }
        Ok(Self {
            shared,
            busy: Mutex::new(()),
            helpers,
        })
    }

    /// Threads in the team, the caller included.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Runs `f` with this team as the current thread's team, so kernels called inside split their work.
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Reset(*const Team);
        impl Drop for Reset {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _reset = Reset(CURRENT.with(|c| c.replace(self as *const Team)));
        f()
    }

    /// Calls `f(i)` for every `i` in `0..threads` and returns when all are done: each on its own thread,
    /// or all on the calling thread, one after another, when another call holds the team.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if !self.try_run(f) {
            (0..self.shared.threads).for_each(f);
        }
    }

    /// [`Team::run`] when every `f(i)` gets its own thread at once (the team has helpers and no other call
    /// holds it); otherwise runs nothing and returns false.
    fn try_run(&self, f: &(dyn Fn(usize) + Sync)) -> bool {
        let s = &*self.shared;
        let guard = match self.busy.try_lock() {
            Ok(g) if s.threads > 1 => g,
            _ => return false,
        };
        // SAFETY: see `Shared`: the lifetime is erased only for the duration of this call.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        unsafe { *s.job.get() = Some(job) };
        s.pending.store(s.threads - 1, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        // Spin briefly, then yield: if a helper was descheduled (another process wants the core), spinning
        // would only keep it off the CPU longer.
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            spins = spins.saturating_add(1);
            if spins < YIELD_AFTER {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        unsafe { *s.job.get() = None };
        // Cleared whichever way this call ends (and before the next caller can start): when the caller's
        // own task panicked too, a helper's flag left set made the next call panic.
        let helper_panicked = s.panicked.swap(false, Ordering::Relaxed);
        drop(guard);
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if helper_panicked {
            panic!("a kernel task panicked on a team thread");
        }
        true
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

fn helper(s: &Shared, index: usize) {
    // Not a fresh load: a call published before this thread got scheduled must still be seen as new.
    let mut seen = 0;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        loop {
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let idle = started.elapsed();
            if idle < TIGHT_SPIN {
                continue;
            }
            if idle < SPIN {
                // Between calls: stay awake, but let anything else that is runnable have the core.
                std::thread::yield_now();
                continue;
            }
            // Park until the next call (or shutdown). The epoch is re-checked under the lock after
            // announcing ourselves, so a call published in between is never missed.
            let mut l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.epoch.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                l = s.wake.wait(l).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        // SAFETY: the epoch changed, so the caller published a job and waits for us to finish it.
        if let Some(job) = unsafe { *s.job.get() } {
            let f = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| f(index))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

/// Splits `0..items` into contiguous chunks that the current team's threads claim as they go, running `f`
/// on each; or runs `f(0..items)` on the calling thread when there is no team, one thread, or less than
/// `min_work`.
///
/// Chunks shrink as the work runs out (each claim takes `1 / (2 * threads)` of what is left, at least
/// one item): big first claims keep the shared counter cold, and the last claims are single items, so the
/// threads finish within about one item of each other. Fixed chunks of an eighth of the call left the
/// caller waiting on its helper for ~8 % of a query's time.
pub fn split(
    items: usize,
    work: usize,
    min_work: usize,
    f: impl Fn(std::ops::Range<usize>) + Sync,
) {
    let team = CURRENT.with(|c| c.get());
    // SAFETY: CURRENT points at a team that outlives the `install` call we are inside of.
    let team = unsafe { team.as_ref() };
    match team {
        Some(team) if team.threads() > 1 && work >= min_work && items > 1 => {
            // Threads claim chunks from a shared counter rather than taking fixed halves: a helper that
            // starts late (it was in a yield) or runs slower (a busy sibling core) then simply does less,
            // instead of the caller waiting for it. Which thread computes an item never changes its result.
            let share = 2 * team.threads();
            let next = AtomicUsize::new(0);
            let f = &f;
            team.run(&|_: usize| {
                let mut start = next.load(Ordering::Relaxed);
                while start < items {
                    let end = start + (items - start).div_ceil(share);
                    match next.compare_exchange_weak(
                        start,
                        end,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            f(start..end);
                            start = next.load(Ordering::Relaxed);
                        }
                        Err(now) => start = now,
                    }
                }
            });
        }
        _ => f(0..items),
    }
}

/// The current thread's team size (1 without a team).
pub fn current_threads() -> usize {
    let team = CURRENT.with(|c| c.get());
    // SAFETY: as in `split`.
    unsafe { team.as_ref() }.map_or(1, Team::threads)
}

/// Runs `f` with no current team, so the kernels it calls run on the calling thread alone.
pub fn alone<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(*const Team);
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(CURRENT.with(|c| c.replace(std::ptr::null())));
    f()
}

/// Runs `f` once per thread of the current team, all at the same time, each given its [`Part`]: for work
/// that its parts do side by side from start to end, meeting at [`Part::wait`] where one part needs
/// another's results, instead of one hand-off per kernel call. Kernels called inside `f` run on their
/// part's thread alone.
///
/// With no team, a team of one, or a team another call holds, `f` runs once on the calling thread as the
/// only part (`count` 1), so `f` must do the whole job whatever its share.
///
/// If a part panics, parts waiting for it at [`Part::wait`] panic too (nothing deadlocks), and the panic
/// reaches the caller.
pub fn together(f: impl Fn(Part<'_>) + Sync) {
    let team = CURRENT.with(|c| c.get());
    // SAFETY: as in `split`.
    if let Some(team) = unsafe { team.as_ref() } {
        let meet = Meeting {
            parts: team.threads(),
            arrived: AtomicUsize::new(0),
            round: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
        };
        let ran = team.try_run(&|index| {
            let part = Part { index, meet: &meet };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| alone(|| f(part)))) {
                meet.broken.store(true, Ordering::Release);
                std::panic::resume_unwind(p);
            }
        });
        if ran {
            return;
        }
    }
    let meet = Meeting {
        parts: 1,
        arrived: AtomicUsize::new(0),
        round: AtomicUsize::new(0),
        broken: AtomicBool::new(false),
    };
    alone(|| {
        f(Part {
            index: 0,
            meet: &meet,
        })
    })
}

/// Where the parts of one [`together`] call meet: a spinning barrier that can be broken by a panic.
struct Meeting {
    parts: usize,
    /// Parts that reached the current round's [`Part::wait`].
    arrived: AtomicUsize,
    /// Rounds completed; a waiting part leaves when it changes.
    round: AtomicUsize,
    /// Set when a part panicked: the others must not wait for it.
    broken: AtomicBool,
}

/// One thread's share of a [`together`] call: part `index` of [`Part::count`].
#[derive(Clone, Copy)]
pub struct Part<'a> {
    /// This part's number, `0..count`; part 0 runs on the calling thread.
    pub index: usize,
    meet: &'a Meeting,
}

impl Part<'_> {
    /// How many parts run.
    pub fn count(&self) -> usize {
        self.meet.parts
    }

    /// This part's contiguous, balanced share of `0..items` (the first parts get the smaller shares).
    pub fn share(&self, items: usize) -> std::ops::Range<usize> {
        let n = self.count();
        items * self.index / n..items * (self.index + 1) / n
    }

    /// Returns once every part has called `wait` as often as this one: what any part wrote before its call
    /// is then visible to every part. Panics if another part panicked.
    pub fn wait(&self) {
        let m = self.meet;
        if m.parts == 1 {
            return;
        }
        let round = m.round.load(Ordering::Acquire);
        if m.arrived.fetch_add(1, Ordering::AcqRel) + 1 == m.parts {
            // Last in: reset the count before opening the round, so a part that leaves and comes straight
            // back to the next `wait` counts from zero.
            m.arrived.store(0, Ordering::Relaxed);
            m.round.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let mut spins = 0u32;
        while m.round.load(Ordering::Acquire) == round {
            if m.broken.load(Ordering::Acquire) {
                panic!("another part of the call panicked");
            }
            spins = spins.saturating_add(1);
            if spins < YIELD_AFTER {
                std::hint::spin_loop();
            } else {
                // A part that lost its core (another process wants it) gets it back sooner.
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_runs_once_per_call_and_helpers_sleep_and_wake() {
        let team = Team::new(3, "test-team").unwrap();
        let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        for round in 0..200 {
            team.run(&|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            if round == 100 {
                // Long enough for the helpers to park; the next call must wake them.
                std::thread::sleep(SPIN * 4);
            }
        }
        for h in &hits {
            assert_eq!(h.load(Ordering::Relaxed), 200);
        }
    }

    #[test]
    fn split_covers_the_range_exactly_inside_install_only() {
        let team = Team::new(2, "test-split").unwrap();
        let seen: Vec<AtomicUsize> = (0..101).map(|_| AtomicUsize::new(0)).collect();
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        team.install(|| {
            split(101, usize::MAX, 0, |r| {
                threads.lock().unwrap().insert(std::thread::current().id());
                // Chunks are claimed dynamically: make each slow enough that the helper, parked at
                // first, wakes up while chunks are left.
                std::thread::sleep(Duration::from_millis(2));
                for i in r {
                    seen[i].fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
        assert_eq!(threads.lock().unwrap().len(), 2, "both threads took part");
        assert_eq!(current_threads(), 1, "install restores the previous team");
    }

    #[test]
    fn together_runs_every_part_at_once_and_waits_order_them() {
        let team = Team::new(3, "test-together").unwrap();
        let slots: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let threads = std::sync::Mutex::new(std::collections::HashSet::new());
        for round in 1..=300 {
            team.install(|| {
                together(|part| {
                    assert_eq!(part.count(), 3);
                    assert_eq!(current_threads(), 1, "kernels inside a part run alone");
                    threads.lock().unwrap().insert(std::thread::current().id());
                    // Two meetings per call: every part must see every other part's write of this
                    // round after the first, and nobody may start the next round's write early.
                    slots[part.index].store(round, Ordering::Relaxed);
                    part.wait();
                    for s in &slots {
                        assert_eq!(s.load(Ordering::Relaxed), round);
                    }
                    part.wait();
                })
            });
        }
        assert_eq!(
            threads.lock().unwrap().len(),
            3,
            "each part on its own thread"
        );
        // No team: one part does everything.
        let calls = AtomicUsize::new(0);
        together(|part| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert_eq!((part.index, part.count(), part.share(10)), (0, 1, 0..10));
            part.wait();
        });
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn shares_cover_the_items_in_order() {
        let team = Team::new(3, "test-share").unwrap();
        for items in [0usize, 1, 2, 13, 100] {
            let got: Vec<std::sync::Mutex<std::ops::Range<usize>>> =
                (0..3).map(|_| std::sync::Mutex::new(0..0)).collect();
            team.install(|| together(|p| *got[p.index].lock().unwrap() = p.share(items)));
            let got: Vec<_> = got.into_iter().map(|m| m.into_inner().unwrap()).collect();
            assert_eq!(got[0].start, 0);
            assert_eq!(got[2].end, items);
            assert!(got.windows(2).all(|w| w[0].end == w[1].start));
            assert!(got.iter().all(|r| r.len() <= items.div_ceil(3)));
        }
    }

    #[test]
    fn a_part_that_panics_releases_the_others() {
        let team = Team::new(2, "test-together-panic").unwrap();
        for bad in [0, 1] {
            let r = catch_unwind(AssertUnwindSafe(|| {
                team.install(|| {
                    together(|part| {
                        if part.index == bad {
                            panic!("boom");
                        }
                        part.wait();
                    })
                })
            }));
            assert!(r.is_err(), "part {bad} panicked: the call panics");
        }
        // The team works afterwards, parts still side by side.
        let n = AtomicUsize::new(0);
        team.install(|| {
            together(|part| {
                n.fetch_add(1, Ordering::Relaxed);
                part.wait();
                assert_eq!(n.load(Ordering::Relaxed), 2);
            })
        });
    }

    #[test]
    fn a_panicking_task_is_reported_not_deadlocked() {
        let team = Team::new(2, "test-panic").unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run(&|i| {
                if i == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        // The team still works afterwards.
        let n = AtomicUsize::new(0);
        team.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
        // The caller and the helper both panicking: the call panics, and the next one does not.
        let r = catch_unwind(AssertUnwindSafe(|| team.run(&|_| panic!("boom"))));
        assert!(r.is_err());
        team.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 4);
    }
}

//! The drivers' runtime: what a p2pmesh driver needs from its executor, the same on tokio (native)
//! and on the browser's event loop (wasm32), so that one driver's code serves both.
//!
//! | need | native | browser |
//! |---|---|---|
//! | [`spawn`] a task | `tokio::spawn` (the future is `Send`) | `wasm_bindgen_futures::spawn_local` |
//! | [`sleep`], [`sleep_until`], [`timeout`] | `tokio::time` (so tests may pause the clock) | `setTimeout` (gloo-timers) |
//! | the monotonic clock [`Instant`] | `tokio::time::Instant` | `performance.now()` (web-time) |
//!
//! A spawned task is a [`Task`]: it can be aborted and awaited, and dropping it lets it run on
//! (as tokio's `JoinHandle` does). A [`TaskSet`] holds the tasks of one owner.
//!
//! The sans-IO cores never use this crate: they take time as an input.

#![deny(missing_docs)]

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{AbortHandle, Abortable, Either, select};

#[cfg(not(target_arch = "wasm32"))]
pub use tokio::time::Instant;
#[cfg(target_arch = "wasm32")]
pub use web_time::Instant;

/// `Send` where tasks may move between threads (native), nothing in the browser (one thread, and
/// the browser's objects are not `Send`). Futures given to [`spawn`] must be `MaybeSend`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Send` where tasks may move between threads (native), nothing in the browser (one thread, and
/// the browser's objects are not `Send`). Futures given to [`spawn`] must be `MaybeSend`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep(duration).await;
    #[cfg(target_arch = "wasm32")]
    {
        // setTimeout takes an i32 of milliseconds; longer waits are taken in steps.
        let mut left = duration;
        while !left.is_zero() {
            let step = left.min(Duration::from_secs(86_400));
            // Round up so that a wake-up is never early.
            let millis = step.as_micros().div_ceil(1000);
            gloo_timers::future::TimeoutFuture::new(u32::try_from(millis).unwrap_or(u32::MAX))
                .await;
            left -= step;
        }
    }
}

/// Waits until `deadline` (at once when it has passed).
pub async fn sleep_until(deadline: Instant) {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::time::sleep_until(deadline).await;
    #[cfg(target_arch = "wasm32")]
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        sleep(deadline - now).await;
    }
}

/// Waits until `deadline`, or forever when it is `None` (for a `select!` arm whose timer is off).
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The time ran out before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for Elapsed {}

/// Runs `future` for at most `duration`.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        tokio::time::timeout(duration, future)
            .await
            .map_err(|_| Elapsed)
    }
    #[cfg(target_arch = "wasm32")]
    {
        match select(pin!(future), pin!(sleep(duration))).await {
            Either::Left((output, _)) => Ok(output),
            Either::Right(((), _)) => Err(Elapsed),
        }
    }
}

/// Runs `future` until `deadline`.
pub async fn timeout_at<F: Future>(deadline: Instant, future: F) -> Result<F::Output, Elapsed> {
    match select(pin!(future), pin!(sleep_until(deadline))).await {
        Either::Left((output, _)) => Ok(output),
        Either::Right(((), _)) => Err(Elapsed),
    }
}

/// A spawned task: abort it, or wait for its end. Dropping it lets the task run on.
#[derive(Debug)]
pub struct Task {
    abort: AbortHandle,
    done: oneshot::Receiver<()>,
    finished: bool,
}

impl Task {
    /// Stops the task at its next wait; [`join`](Self::join) then returns.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// Whether the task has ended (finished or aborted), without waiting.
    pub fn is_finished(&mut self) -> bool {
        if !self.finished {
            // `Ok(Some)`: it finished; `Err`: it was aborted or dropped.
            self.finished = !matches!(self.done.try_recv(), Ok(None));
        }
        self.finished
    }

    /// Waits for the task's end (finished or aborted).
    pub async fn join(&mut self) {
        if !self.finished {
            let _ = (&mut self.done).await;
            self.finished = true;
        }
    }
}

/// Starts `future` as a task of the current runtime (native: a tokio runtime must be running).
pub fn spawn<F>(future: F) -> Task
where
    F: Future<Output = ()> + MaybeSend + 'static,
{
    let (abort, registration) = AbortHandle::new_pair();
    let (done_tx, done) = oneshot::channel();
    let task = async move {
        // Aborted or not, the task ends here; the sender dropped on abort ends `join` too.
        if Abortable::new(future, registration).await.is_ok() {
            let _ = done_tx.send(());
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    tokio::spawn(task);
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_futures::spawn_local(task);
    Task {
        abort,
        done,
        finished: false,
    }
}

/// The tasks of one owner (a driver's link tasks): reap the finished ones, wait for all, abort all.
#[derive(Debug, Default)]
pub struct TaskSet {
    tasks: Vec<Task>,
}

impl TaskSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `future` into the set.
    pub fn spawn<F>(&mut self, future: F)
    where
        F: Future<Output = ()> + MaybeSend + 'static,
    {
        self.reap();
        self.tasks.push(spawn(future));
    }

    /// Forgets the tasks that have ended (the set stays as large as what still runs).
    pub fn reap(&mut self) {
        self.tasks.retain_mut(|t| !t.is_finished());
    }

    /// How many tasks may still run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is held.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits until every task has ended.
    pub async fn join_all(&mut self) {
        for task in &mut self.tasks {
            task.join().await;
        }
        self.tasks.clear();
    }

    /// Aborts every task.
    pub fn abort_all(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_task_runs_and_is_joined() {
        let (tx, rx) = oneshot::channel();
        let mut task = spawn(async move {
            sleep(Duration::from_secs(5)).await;
            let _ = tx.send(7);
        });
        assert!(!task.is_finished());
        task.join().await;
        assert!(task.is_finished());
        assert_eq!(rx.await, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_task_stops_and_join_returns() {
        let (tx, rx) = oneshot::channel::<()>();
        let mut task = spawn(async move {
            sleep(Duration::from_secs(3600)).await;
            let _ = tx.send(());
        });
        tokio::task::yield_now().await;
        task.abort();
        task.join().await;
        // The task's sender was dropped without sending: it never got past the sleep.
        assert!(rx.await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_elapses_and_passes() {
        let slow = timeout(Duration::from_secs(1), sleep(Duration::from_secs(2))).await;
        assert_eq!(slow, Err(Elapsed));
        let fast = timeout(Duration::from_secs(2), async { 5 }).await;
        assert_eq!(fast, Ok(5));
        let at = Instant::now() + Duration::from_secs(1);
        assert_eq!(
            timeout_at(at, std::future::pending::<()>()).await,
            Err(Elapsed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_set_reaps_joins_and_aborts() {
        let mut set = TaskSet::new();
        set.spawn(async {});
        set.spawn(sleep(Duration::from_secs(10)));
        tokio::task::yield_now().await;
        set.reap();
        assert_eq!(set.len(), 1);
        set.join_all().await;
        assert!(set.is_empty());
        set.spawn(std::future::pending());
        set.abort_all();
        assert!(set.is_empty());
    }
}

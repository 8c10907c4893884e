//! Background workers, in the spirit of Garage's `Worker`: a worker does
//! one unit of work and says what comes next (more work, a wait, or the
//! end); [`spawn`] runs it until the stop token is cancelled. A unit of
//! work is never interrupted: cancellation is seen between units and
//! during waits. An error is logged with the worker's name and retried
//! after a backoff (200 ms doubling to 30 s, reset by the next success).
//! A worker with a tranquility `t` rests `t` times as long as its last
//! unit took before the next, so it leaves the disk and cores to the
//! foreground most of the time (Garage's tranquilizer).

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Result;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a worker does after a unit of work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// There is more to do now.
    Busy,
    /// Nothing to do before this much time has passed.
    Idle(Duration),
    /// Nothing more, ever: the worker ends.
    Done,
}

pub trait Worker: Send + 'static {
    /// Names the worker in logs.
    fn name(&self) -> &'static str;
    /// Does one unit of work.
    fn work(&mut self) -> impl Future<Output = Result<Next>> + Send;
    /// Rest after a busy unit, as a multiple of the time it took (0: none).
    fn tranquility(&self) -> u32 {
        0
    }
}

/// Runs `w` on the tokio runtime until it is done or `stop` is cancelled.
pub fn spawn<W: Worker>(mut w: W, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        while !stop.is_cancelled() {
            let started = Instant::now();
            let wait = match w.work().await {
                Ok(Next::Busy) => {
                    backoff = MIN_BACKOFF;
                    started.elapsed() * w.tranquility()
                }
                Ok(Next::Idle(d)) => {
                    backoff = MIN_BACKOFF;
                    d
                }
                Ok(Next::Done) => return,
                Err(e) => {
                    tracing::error!(worker = w.name(), error = %e, retry_in = %humantime::format_duration(backoff), "background work failed");
                    let b = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    b
                }
            };
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    })
}

/// A worker that runs `f` every `period`, first after `first`; a failed
/// run is logged and the next one comes a period later, as usual.
pub struct Periodic<F> {
    pub name: &'static str,
    pub first: Option<Duration>,
    pub period: Duration,
    pub f: F,
}

impl<F, Fut> Worker for Periodic<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    fn name(&self) -> &'static str {
        self.name
    }

    async fn work(&mut self) -> Result<Next> {
        if let Some(first) = self.first.take() {
            return Ok(Next::Idle(first));
        }
        if let Err(e) = (self.f)().await {
            tracing::error!(worker = self.name, error = %e, "scheduled run failed");
        }
        Ok(Next::Idle(self.period))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::Error;

    struct Flaky {
        runs: Arc<AtomicU32>,
    }

    impl Worker for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn work(&mut self) -> Result<Next> {
            match self.runs.fetch_add(1, Ordering::SeqCst) {
                0 => Err(Error::Internal("first run fails".into())),
                1 | 2 => Ok(Next::Busy),
                _ => Ok(Next::Done),
            }
        }
    }

    #[tokio::test]
    async fn retries_after_an_error_and_ends_when_done() {
        let runs = Arc::new(AtomicU32::new(0));
        let h = spawn(Flaky { runs: runs.clone() }, CancellationToken::new());
        tokio::time::timeout(Duration::from_secs(5), h).await.unwrap().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn stops_waiting_on_cancel() {
        let runs = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let r = runs.clone();
        let w = Periodic {
            name: "hourly",
            first: None,
            period: Duration::from_secs(3600),
            f: move || {
                r.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        };
        let h = spawn(w, stop.clone());
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), h).await.unwrap().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}

//! Bounds on an upload stream's frames and pace, applied before a frame
//! reaches the write path:
//!
//! - at most [`MAX_EMPTY_FRAMES`] empty data messages (a flood of them
//!   costs the daemon work and memory while sending no bytes);
//! - at most [`FRAME_ALLOWANCE`] messages plus one per [`MIN_AVG_FRAME`]
//!   bytes sent (tiny messages cost per message, not per byte);
//! - after `grace` of waiting on the client, an average of at least
//!   `min_rate` bytes per second of that waiting. Only the time the daemon
//!   spends waiting for the next message counts: time the daemon itself
//!   takes (a busy disk, a queue for worker threads) is not the client's.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};

/// Empty data messages an upload may send.
pub const MAX_EMPTY_FRAMES: u64 = 1024;
/// Messages any upload may send, whatever their size.
pub const FRAME_ALLOWANCE: u64 = 4096;
/// Beyond the allowance, one more message per this many bytes.
pub const MIN_AVG_FRAME: u64 = 256;

#[derive(Clone, Copy, Debug)]
pub struct PaceLimits {
    /// Bytes per second of waiting on the client; 0: no minimum.
    pub min_rate: u64,
    /// Waiting on the client before the minimum applies.
    pub grace: Duration,
}

/// A frame stream checked against [`PaceLimits`] and the frame bounds;
/// the first breach is its last item, an error.
pub struct Paced<S> {
    inner: S,
    limits: PaceLimits,
    frames: u64,
    empty: u64,
    bytes: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
    done: bool,
}

impl<S> Paced<S> {
    pub fn new(inner: S, limits: PaceLimits) -> Self {
        Paced {
            inner,
            limits,
            frames: 0,
            empty: 0,
            bytes: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            done: false,
        }
    }

    fn admit(&mut self, f: &Bytes) -> Result<()> {
        self.frames += 1;
        self.bytes += f.len() as u64;
        if f.is_empty() {
            self.empty += 1;
            if self.empty > MAX_EMPTY_FRAMES {
                return Err(Error::invalid(format!(
                    "the upload sent more than {MAX_EMPTY_FRAMES} empty data messages"
                )));
            }
        }
        if self.frames > FRAME_ALLOWANCE + self.bytes / MIN_AVG_FRAME {
            return Err(Error::invalid(format!(
                "the upload sent {} data messages for {} bytes: past the first {FRAME_ALLOWANCE}, \
                 messages must average at least {MIN_AVG_FRAME} bytes",
                self.frames, self.bytes
            )));
        }
        self.check_rate()
    }

    fn check_rate(&self) -> Result<()> {
        let PaceLimits { min_rate, grace } = self.limits;
        if min_rate == 0 || self.waited <= grace {
            return Ok(());
        }
        let secs = self.waited.as_secs_f64();
        if (self.bytes as f64) < min_rate as f64 * secs {
            return Err(Error::Timeout(format!(
                "the upload sent {} bytes in {secs:.1} s, under the minimum of {min_rate} bytes/s (upload_min_rate)",
                self.bytes
            )));
        }
        Ok(())
    }
}

impl<S: Stream<Item = Result<Bytes>> + Unpin> Stream for Paced<S> {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let since = self.waiting_since.take().unwrap_or_else(Instant::now);
        let item = match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Pending => {
                self.waiting_since = Some(since);
                return Poll::Pending;
            }
            Poll::Ready(item) => item,
        };
        self.waited += since.elapsed();
        let item = match item {
            Some(Ok(f)) => match self.admit(&f) {
                Ok(()) => Some(Ok(f)),
                Err(e) => Some(Err(e)),
            },
            // The end of the stream is fine however slow; an error is the last item.
            other => other,
        };
        if matches!(item, Some(Err(_))) {
            self.done = true;
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn limits() -> PaceLimits {
        PaceLimits {
            min_rate: 0,
            grace: Duration::ZERO,
        }
    }

    async fn run(frames: Vec<Bytes>, l: PaceLimits) -> Result<u64> {
        let mut s = Paced::new(futures::stream::iter(frames.into_iter().map(Ok)), l);
        let mut n = 0;
        while let Some(f) = s.next().await {
            n += f?.len() as u64;
        }
        Ok(n)
    }

    #[tokio::test]
    async fn empty_and_tiny_frames_are_bounded() {
        let empty = vec![Bytes::new(); MAX_EMPTY_FRAMES as usize];
        assert_eq!(run(empty.clone(), limits()).await.unwrap(), 0);
        let mut more = empty;
        more.push(Bytes::new());
        let e = run(more, limits()).await.unwrap_err();
        assert!(e.to_string().contains("empty data messages"), "{e}");
        // Many one-byte frames: fine up to the allowance, then refused.
        let one = Bytes::from_static(b"x");
        let n = FRAME_ALLOWANCE as usize;
        assert!(run(vec![one.clone(); n], limits()).await.is_ok());
        let e = run(vec![one; 2 * n], limits()).await.unwrap_err();
        assert!(e.to_string().contains("must average at least"), "{e}");
        // Big frames never hit it.
        let big = Bytes::from(vec![7u8; 64 << 10]);
        assert_eq!(run(vec![big; 100], limits()).await.unwrap(), 100 * (64 << 10));
    }

    #[tokio::test]
    async fn a_slow_client_is_cut_off_after_the_grace_period() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let l = PaceLimits {
            min_rate: 1 << 20,
            grace: Duration::from_millis(200),
        };
        let mut s = Paced::new(tokio_stream::wrappers::ReceiverStream::new(rx), l);
        let feeder = tokio::spawn(async move {
            for _ in 0..50 {
                if tx.send(Ok(Bytes::from_static(&[1; 100]))).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut got = Ok(());
        while let Some(f) = s.next().await {
            if let Err(e) = f {
                got = Err(e);
                break;
            }
        }
        let e = got.unwrap_err();
        assert!(matches!(&e, Error::Timeout(m) if m.contains("upload_min_rate")), "{e}");
        feeder.abort();
    }
}

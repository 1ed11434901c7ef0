//! Request bodies under a total read deadline and a process-wide byte budget,
//! and answer bodies that mark their request in flight until sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::{ConnState, InFlight};

/// Counts a request body as being received on its connection until it has
/// ended or been dropped (such a connection may be closed to make room).
pub(super) struct Reading(Option<Arc<ConnState>>);

impl Reading {
    pub(super) fn new(state: Arc<ConnState>) -> Reading {
        state.reading.fetch_add(1, Ordering::AcqRel);
        Reading(Some(state))
    }

    fn done(&mut self) {
        if let Some(s) = self.0.take() {
            s.reading.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.done();
    }
}

/// The error a request body gives when its deadline passed; the listener
/// answers `408 Request Timeout` whatever the handler made of it.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within web.body_read_timeout_secs")]
pub struct BodyTimedOut;

type Acquire = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>;

/// A request body read against a deadline (from the request's start, not
/// per chunk: a trickle does not extend it) and a global budget of buffered
/// request bytes. Beyond a small allowance per request, every byte read
/// takes budget until the body is dropped; when the budget is spent the
/// read waits (flow control holds the client back) until the deadline.
/// Each chunk is copied out of the connection's read buffer so that a
/// kept chunk does not pin the buffer it was read into.
pub struct Limited {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    budget: Arc<Semaphore>,
    budget_total: usize,
    free: usize,
    held: Option<OwnedSemaphorePermit>,
    waiting: Option<(Bytes, Acquire)>,
    timed_out: Arc<AtomicBool>,
    reading: Reading,
}

impl Limited {
    pub(super) fn new(
        inner: Incoming,
        timeout: Duration,
        budget: Arc<Semaphore>,
        budget_total: usize,
        free: usize,
        timed_out: Arc<AtomicBool>,
        mut reading: Reading,
    ) -> Limited {
        if http_body::Body::is_end_stream(&inner) {
            reading.done();
        }
        Limited {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            budget,
            budget_total,
            free,
            held: None,
            waiting: None,
            timed_out,
            reading,
        }
    }

    fn keep(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.held {
            Some(h) => h.merge(permit),
            None => self.held = Some(permit),
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.timed_out.store(true, Ordering::Release);
            self.waiting = None;
            true
        } else {
            false
        }
    }
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if this.timed_out.load(Ordering::Acquire) {
                return Poll::Ready(Some(Err(BodyTimedOut.into())));
            }
            if let Some((_, acquire)) = &mut this.waiting {
                return match acquire.as_mut().poll(cx) {
                    Poll::Ready(Some(permit)) => {
                        this.keep(permit);
                        let data = this.waiting.take().map(|(d, _)| d).unwrap_or_default();
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Poll::Ready(None) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
                    Poll::Pending if this.expired(cx) => {
                        Poll::Ready(Some(Err(BodyTimedOut.into())))
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => {
                    this.reading.done();
                    return Poll::Ready(None);
                }
                Poll::Pending if this.expired(cx) => {
                    return Poll::Ready(Some(Err(BodyTimedOut.into())));
                }
                Poll::Pending => return Poll::Pending,
            };
            let chunk = match frame.into_data() {
                Ok(data) => data,
                Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
            };
            let data = Bytes::copy_from_slice(&chunk);
            let from_free = data.len().min(this.free);
            this.free -= from_free;
            let needed = (data.len() - from_free).min(this.budget_total);
            if needed == 0 {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let n = u32::try_from(needed).unwrap_or(u32::MAX);
            match this.budget.clone().try_acquire_many_owned(n) {
                Ok(permit) => {
                    this.keep(permit);
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Err(_) => {
                    let budget = this.budget.clone();
                    let acquire: Acquire =
                        Box::pin(async move { budget.acquire_many_owned(n).await.ok() });
                    // Polled on the next turn, so that it is woken when budget frees.
                    this.waiting = Some((data, acquire));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.waiting.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

/// An answer's body that keeps its request counted as in flight (the
/// connection is not idle) until it has been sent or dropped.
pub(super) struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl Tracked {
    pub(super) fn new(inner: Body, in_flight: InFlight) -> Tracked {
        Tracked {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! Driving one streamed completion: deltas flow to the caller as the upstream produces them, then one final
//! event. The caller dropping the stream ends the task, which drops the forwarding future and with it the
//! upstream connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::{CompleteOutcome, Gateway, GatewayError, Prepared};
use crate::upstream::Delta;

/// Deltas buffered between the forwarding task and a slow caller.
const STREAM_BUFFER: usize = 32;

/// One event of a streamed completion.
#[derive(Debug)]
pub enum StreamEvent {
    /// The next piece of the answer: text or part of a tool call.
    Delta(Delta),
    /// The answer is complete: usage, cost, who served it, every attempt and the decision. The last event.
    Done(Box<CompleteOutcome>),
    /// The completion failed (every target, or a break after the answer started). The last event.
    Error(GatewayError),
}

/// The events of one streamed completion, ending with [`StreamEvent::Done`] or [`StreamEvent::Error`].
pub struct CompletionStream {
    rx: mpsc::Receiver<StreamEvent>,
    decision: crate::router::Decision,
}

impl CompletionStream {
    /// The routing decision, known before the first delta (faces send it in headers).
    pub fn decision(&self) -> &crate::router::Decision {
        &self.decision
    }

    /// The next event; `None` after the last one.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for CompletionStream {
    type Item = StreamEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Starts forwarding `prepared` on its own task and returns its events.
pub(super) fn spawn(gateway: Arc<Gateway>, prepared: Prepared) -> CompletionStream {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let decision = prepared.decision.clone();
    // The stream outlives the handler: it stays in the request's span (attempts and outcome land there).
    tokio::spawn(tracing::Instrument::instrument(
        run(gateway, prepared, tx),
        tracing::Span::current(),
    ));
    CompletionStream { rx, decision }
}

async fn run(gateway: Arc<Gateway>, prepared: Prepared, out: mpsc::Sender<StreamEvent>) {
    let (dtx, mut drx) = mpsc::channel::<Delta>(STREAM_BUFFER);
    let forward = gateway.forward(prepared, Some(&dtx));
    tokio::pin!(forward);
    let result = loop {
        tokio::select! {
            biased;
            _ = out.closed() => {
                tracing::debug!("stream cancelled by the caller");
                return;
            }
            Some(d) = drx.recv() => {
                if out.send(StreamEvent::Delta(d)).await.is_err() {
                    return;
                }
            }
            r = &mut forward => break r,
        }
    };
    while let Ok(d) = drx.try_recv() {
        if out.send(StreamEvent::Delta(d)).await.is_err() {
            return;
        }
    }
    let last = match result {
        Ok(outcome) => StreamEvent::Done(Box::new(outcome)),
        Err(e) => StreamEvent::Error(e.into()),
    };
    let _ = out.send(last).await;
}

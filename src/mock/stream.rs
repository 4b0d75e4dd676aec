//! `GET .../requests/{id}/status/stream`: the job's status as server-sent events, one
//! `data: <status JSON>` event at start and on every change of status, queue position or log
//! count, ending after the `COMPLETED` event.
//!
//! With `logs=1` each event carries only the log lines written since the previous event, as
//! fal's stream does: the official JS client (`libs/client/src/queue.ts`) appends the `logs` of
//! successive stream events to rebuild the full list.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use super::MockFal;
use super::jobs::Phase;
use super::queue::{phase_now, status_body};

/// How often the job's state is looked at.
const POLL: Duration = Duration::from_millis(100);

struct Cursor {
    mock: MockFal,
    id: String,
    with_logs: bool,
    last: Option<Phase>,
    logs_sent: usize,
    done: bool,
}

impl Cursor {
    /// The next event, waiting for a change; `None` once completed (or the job is gone).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.done {
                return None;
            }
            let job = self.mock.job(&self.id)?;
            let phase = phase_now(&self.mock, &job);
            if self.last != Some(phase) {
                let written = match phase {
                    Phase::InQueue { .. } => 0,
                    Phase::InProgress { logs } | Phase::Completed { logs, .. } => logs,
                };
                let logs = self.with_logs.then_some(self.logs_sent..written);
                let body = status_body(&self.mock, &job, phase, logs);
                self.logs_sent = written;
                self.last = Some(phase);
                self.done = matches!(phase, Phase::Completed { .. });
                return Some(Event::default().data(body.to_string()));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The event-stream response for job `id`.
pub fn respond(mock: MockFal, id: String, with_logs: bool) -> Response {
    let cursor = Cursor {
        mock,
        id,
        with_logs,
        last: None,
        logs_sent: 0,
        done: false,
    };
    let events = stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        Some((Ok::<_, Infallible>(event), cursor))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response();
    // Ask reverse proxies (nginx) not to buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    response
}

//! The job timeline, a pure function of (submit instant, now, timing, cancel instant), and the
//! bounded store of jobs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::OnceCell;

use super::gallery::ImageMeta;
use super::input::GenParams;
use crate::config::MockConfig;

/// Seconds of remaining queue time per queue position shown to the client.
const QUEUE_STEP_SECS: f64 = 0.5;
/// Longest phase accepted from the configuration (a day); larger values are clamped.
const MAX_PHASE_SECS: f64 = 86_400.0;
/// The fake model's log lines, spread evenly over the `IN_PROGRESS` phase.
pub const LOG_MESSAGES: [&str; 6] = [
    "Loading model weights",
    "Encoding prompt and reference images",
    "Sampling: step 10/30",
    "Sampling: step 20/30",
    "Sampling: step 30/30",
    "Decoding and encoding output images",
];

/// How long a job spends in each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// Time spent `IN_QUEUE`.
    pub queue: Duration,
    /// Time spent `IN_PROGRESS`.
    pub progress: Duration,
}

/// Where a job is at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting; `position` counts down to 0.
    InQueue { position: u32 },
    /// Running; `logs` lines of [`LOG_MESSAGES`] have been written.
    InProgress { logs: usize },
    /// Finished (normally or by cancellation), with the logs written and the time spent running.
    Completed {
        logs: usize,
        inference: Duration,
        cancelled: bool,
    },
}

fn seconds(value: f64) -> Duration {
    // Negatives become 0; NaN (which `clamp` passes through) is refused by `try_from`, also 0.
    Duration::try_from_secs_f64(value.clamp(0.0, MAX_PHASE_SECS)).unwrap_or_default()
}

impl Timeline {
    /// The timing configured for the fake.
    pub fn from_config(config: &MockConfig) -> Self {
        Self {
            queue: seconds(config.queue_seconds),
            progress: seconds(config.progress_seconds),
        }
    }

    /// Time from submit to completion.
    pub fn total(&self) -> Duration {
        self.queue + self.progress
    }

    /// The phase of a job submitted at `submitted`, as seen at `now`. A job cancelled at
    /// `cancelled_at` (not after `now`) is completed from that instant on, frozen as it was.
    pub fn phase(&self, submitted: Instant, now: Instant, cancelled_at: Option<Instant>) -> Phase {
        if let Some(at) = cancelled_at.filter(|at| *at <= now) {
            let elapsed = at.saturating_duration_since(submitted);
            let (logs, inference) = match self.uncancelled(elapsed) {
                Phase::InQueue { .. } => (0, Duration::ZERO),
                Phase::InProgress { logs } => (logs, elapsed.saturating_sub(self.queue)),
                Phase::Completed {
                    logs, inference, ..
                } => (logs, inference),
            };
            return Phase::Completed {
                logs,
                inference,
                cancelled: true,
            };
        }
        self.uncancelled(now.saturating_duration_since(submitted))
    }

    fn uncancelled(&self, elapsed: Duration) -> Phase {
        if elapsed < self.queue {
            let remaining = (self.queue - elapsed).as_secs_f64();
            let steps = (remaining / QUEUE_STEP_SECS).ceil() as u32;
            return Phase::InQueue {
                position: steps.saturating_sub(1),
            };
        }
        let running = elapsed - self.queue;
        if running < self.progress {
            let share = running.as_secs_f64() / self.progress.as_secs_f64();
            let logs = (share * LOG_MESSAGES.len() as f64).floor() as usize + 1;
            return Phase::InProgress {
                logs: logs.min(LOG_MESSAGES.len()),
            };
        }
        Phase::Completed {
            logs: LOG_MESSAGES.len(),
            inference: self.progress,
            cancelled: false,
        }
    }

    /// Time from submit at which log line `index` is written.
    pub fn log_offset(&self, index: usize) -> Duration {
        let share = index as f64 / LOG_MESSAGES.len() as f64;
        self.queue + self.progress.mul_f64(share)
    }
}

/// One submitted job.
#[derive(Debug, Clone)]
pub struct Job {
    /// The request id (UUID v4 format).
    pub id: String,
    /// `owner/alias`, with a `workflows/`/`comfy/` namespace kept: the part fal's URLs use.
    pub app: String,
    /// The input that drives the generated images.
    pub params: Arc<GenParams>,
    /// When it was submitted (monotonic).
    pub submitted: Instant,
    /// When it was submitted (wall clock, for log timestamps).
    pub submitted_wall: SystemTime,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<Instant>,
    /// The generated images' metadata, filled once on first need.
    pub images: Arc<OnceCell<Arc<[ImageMeta]>>>,
}

impl Job {
    /// A new job submitted now.
    pub fn new(app: String, params: GenParams) -> Self {
        Self {
            id: request_id(),
            app,
            params: Arc::new(params),
            submitted: Instant::now(),
            submitted_wall: SystemTime::now(),
            cancelled_at: None,
            images: Arc::new(OnceCell::new()),
        }
    }

    /// fal's `response_url` for this job (always on `https://queue.fal.run`).
    pub fn response_url(&self) -> String {
        format!("https://queue.fal.run/{}/requests/{}", self.app, self.id)
    }
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// No such job.
    NotFound,
    /// The job was not completed; it now is, as cancelled.
    Requested,
    /// The job had already completed (or been cancelled).
    AlreadyCompleted,
}

/// The jobs, bounded: inserting beyond `cap` forgets the oldest.
#[derive(Debug)]
pub struct JobStore {
    jobs: HashMap<String, Job>,
    order: VecDeque<String>,
    cap: usize,
}

impl JobStore {
    /// An empty store holding at most `cap` jobs.
    pub fn new(cap: usize) -> Self {
        Self {
            jobs: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Adds a job, evicting the oldest when full.
    pub fn insert(&mut self, job: Job) {
        while self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.jobs.remove(&old);
            }
        }
        self.order.push_back(job.id.clone());
        self.jobs.insert(job.id.clone(), job);
    }

    /// A copy of the job with this id.
    pub fn get(&self, id: &str) -> Option<Job> {
        self.jobs.get(id).cloned()
    }

    /// Cancels the job at `now` unless it is already completed.
    pub fn cancel(&mut self, id: &str, now: Instant, timeline: &Timeline) -> CancelOutcome {
        let Some(job) = self.jobs.get_mut(id) else {
            return CancelOutcome::NotFound;
        };
        match timeline.phase(job.submitted, now, job.cancelled_at) {
            Phase::Completed { .. } => CancelOutcome::AlreadyCompleted,
            _ => {
                job.cancelled_at = Some(now);
                CancelOutcome::Requested
            }
        }
    }

    /// How many jobs are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.jobs.len()
    }
}

/// A fresh random id in UUID v4 format, as fal's request ids are.
pub fn request_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn timeline() -> Timeline {
        Timeline {
            queue: Duration::from_secs(2),
            progress: Duration::from_secs(3),
        }
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn queue_position_counts_down_to_zero() {
        let (t, s) = (timeline(), Instant::now());
        assert_eq!(t.phase(s, s, None), Phase::InQueue { position: 3 });
        assert_eq!(t.phase(s, at(s, 600), None), Phase::InQueue { position: 2 });
        assert_eq!(
            t.phase(s, at(s, 1499), None),
            Phase::InQueue { position: 1 }
        );
        assert_eq!(
            t.phase(s, at(s, 1999), None),
            Phase::InQueue { position: 0 }
        );
    }

    #[test]
    fn logs_appear_during_progress_then_completed() {
        let (t, s) = (timeline(), Instant::now());
        assert_eq!(t.phase(s, at(s, 2000), None), Phase::InProgress { logs: 1 });
        assert_eq!(t.phase(s, at(s, 3000), None), Phase::InProgress { logs: 3 });
        assert_eq!(t.phase(s, at(s, 4999), None), Phase::InProgress { logs: 6 });
        let done = Phase::Completed {
            logs: 6,
            inference: Duration::from_secs(3),
            cancelled: false,
        };
        assert_eq!(t.phase(s, at(s, 5000), None), done);
        assert_eq!(t.phase(s, at(s, 999_999), None), done);
        // A "now" before the submit instant reads as just submitted.
        assert_eq!(t.phase(at(s, 10), s, None), Phase::InQueue { position: 3 });
    }

    #[test]
    fn cancellation_freezes_the_job_as_completed() {
        let (t, s) = (timeline(), Instant::now());
        let cancel = Some(at(s, 500));
        assert_eq!(
            t.phase(s, at(s, 400), cancel),
            Phase::InQueue { position: 3 }
        );
        let queued = Phase::Completed {
            logs: 0,
            inference: Duration::ZERO,
            cancelled: true,
        };
        assert_eq!(t.phase(s, at(s, 500), cancel), queued);
        assert_eq!(t.phase(s, at(s, 9000), cancel), queued);
        let running = t.phase(s, at(s, 9000), Some(at(s, 3500)));
        let expected = Phase::Completed {
            logs: 4,
            inference: Duration::from_millis(1500),
            cancelled: true,
        };
        assert_eq!(running, expected);
    }

    #[test]
    fn zero_timing_completes_at_once_and_bad_config_is_clamped() {
        let t = Timeline {
            queue: Duration::ZERO,
            progress: Duration::ZERO,
        };
        let s = Instant::now();
        assert!(matches!(
            t.phase(s, s, None),
            Phase::Completed {
                cancelled: false,
                ..
            }
        ));
        let config = MockConfig {
            queue_seconds: f64::NAN,
            progress_seconds: -1.0,
            public_url: None,
        };
        assert_eq!(Timeline::from_config(&config), t);
    }

    #[test]
    fn store_is_bounded_and_cancel_answers() {
        let t = timeline();
        let mut store = JobStore::new(2);
        let jobs: Vec<Job> = (0..3)
            .map(|_| Job::new("fal-ai/x".into(), GenParams::default()))
            .collect();
        for job in &jobs {
            store.insert(job.clone());
        }
        assert_eq!(store.len(), 2);
        assert!(store.get(&jobs[0].id).is_none());
        let now = jobs[2].submitted;
        assert_eq!(store.cancel(&jobs[2].id, now, &t), CancelOutcome::Requested);
        assert_eq!(
            store.cancel(&jobs[2].id, now, &t),
            CancelOutcome::AlreadyCompleted
        );
        assert_eq!(store.cancel("nope", now, &t), CancelOutcome::NotFound);
        let later = now + Duration::from_secs(6);
        assert_eq!(
            store.cancel(&jobs[1].id, later, &t),
            CancelOutcome::AlreadyCompleted
        );
    }

    #[test]
    fn ids_are_uuid_v4_shaped() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}

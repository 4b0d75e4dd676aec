use super::*;
use crate::test_support::within_5s;
use std::sync::atomic::AtomicU32;

/// How many sleeps of this thread's table are waiting.
fn waiting_here() -> usize {
    Table::of_this_thread().lock().entries.len()
}

#[tokio::test]
async fn a_sleep_ends_no_earlier_than_its_deadline() {
    for millis in [0, 1, 25, 60] {
        let start = Instant::now();
        let duration = Duration::from_millis(millis);
        within_5s(Sleep::new(duration)).await;
        assert!(start.elapsed() >= duration, "{millis} ms");
    }
    assert_eq!(waiting_here(), 0);
}

#[tokio::test]
async fn a_sleep_past_its_deadline_ends_without_waiting() {
    let mut sleep = Sleep::until(Instant::now());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut sleep).poll(&mut cx).is_ready());
    assert!(sleep.waiting.is_none());
}

#[tokio::test]
async fn a_dropped_sleep_leaves_nothing_behind() {
    let before = waiting_here();
    let mut sleeps: Vec<Sleep> = (0..100)
        .map(|i| Sleep::new(Duration::from_secs(60 + i)))
        .collect();
    let mut cx = Context::from_waker(Waker::noop());
    for sleep in &mut sleeps {
        assert!(Pin::new(sleep).poll(&mut cx).is_pending());
    }
    assert_eq!(waiting_here(), before + 100);
    // Polled again with the same waker: still one entry each.
    for sleep in &mut sleeps {
        assert!(Pin::new(sleep).poll(&mut cx).is_pending());
    }
    assert_eq!(waiting_here(), before + 100);
    drop(sleeps);
    assert_eq!(waiting_here(), before);
}

#[tokio::test]
async fn a_waiting_sleep_is_woken_by_the_ticker() {
    // Nothing else wakes this task: only the ticker can finish it.
    let start = Instant::now();
    within_5s(Sleep::new(Duration::from_millis(30))).await;
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn sleeps_on_many_threads_and_runtimes_all_end() {
    let ended = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ended = ended.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let sleeps = (0..50).map(|i| {
                        let ended = ended.clone();
                        tokio::spawn(async move {
                            Sleep::new(Duration::from_millis((t * 7 + i) % 40)).await;
                            ended.fetch_add(1, SeqCst);
                        })
                    });
                    for sleep in sleeps.collect::<Vec<_>>() {
                        within_5s(sleep).await.unwrap();
                    }
                });
                assert_eq!(waiting_here(), 0);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(ended.load(SeqCst), 8 * 50);
}

#[tokio::test]
async fn hyper_sleeps_end_and_can_be_reset() {
    let timer = CoarseTimer;
    let start = Instant::now();
    within_5s(timer.sleep(Duration::from_millis(20))).await;
    assert!(start.elapsed() >= Duration::from_millis(20));
    let mut sleep = timer.sleep(Duration::from_secs(3600));
    let deadline = Instant::now() + Duration::from_millis(20);
    timer.reset(&mut sleep, deadline);
    within_5s(sleep).await;
    assert!(Instant::now() >= deadline);
}

#[tokio::test]
async fn a_short_sleep_behind_a_long_one_still_ends() {
    let mut long = Sleep::new(Duration::from_secs(3600));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut long).poll(&mut cx).is_pending());
    let start = Instant::now();
    within_5s(Sleep::new(Duration::from_millis(30))).await;
    assert!(start.elapsed() >= Duration::from_millis(30));
    drop(long);
}

#[test]
fn a_huge_duration_waits_without_overflowing() {
    let mut sleep = Sleep::new(Duration::MAX);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut sleep).poll(&mut cx).is_pending());
}

//! Shared tests: budgets, including concurrent reservations.

use std::sync::Barrier;

use super::at;
use crate::store::{BudgetLimits, Period, Reservation, Store, StoreError, Usage};

const USD: i64 = 1_000_000;

fn limits(daily: Option<i64>, monthly: Option<i64>) -> BudgetLimits {
    BudgetLimits { daily, monthly }
}

fn used(store: &dyn Store, client: &str, now: i64) -> (i64, i64) {
    let usage = store.usage(client, now).unwrap();
    (usage.day_used, usage.month_used)
}

pub(super) fn reserve_within_limits(store: &dyn Store) {
    let t = at(2026, 1, 31, 12);
    let l = limits(Some(10 * USD), Some(100 * USD));
    for _ in 0..4 {
        assert_eq!(
            store.reserve_budget("alice", 2 * USD, l, t).unwrap(),
            Reservation::Reserved
        );
    }
    // Exactly reaching the limit is within it.
    assert_eq!(
        store.reserve_budget("alice", 2 * USD, l, t).unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        store.reserve_budget("alice", 0, l, t).unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        store.usage("alice", t).unwrap(),
        Usage {
            day_used: 10 * USD,
            month_used: 10 * USD,
            day_resets_at: at(2026, 2, 1, 0),
            month_resets_at: at(2026, 2, 1, 0),
        }
    );
    assert_eq!(used(store, "bob", t), (0, 0), "budgets are per client");
}

pub(super) fn daily_limit_exceeded(store: &dyn Store) {
    let t = at(2026, 1, 15, 23);
    let l = limits(Some(100), Some(1_000));
    assert_eq!(
        store.reserve_budget("alice", 60, l, t).unwrap(),
        Reservation::Reserved
    );
    let exceeded = Reservation::Exceeded {
        period: Period::Day,
        limit: 100,
        used: 60,
        resets_at: at(2026, 1, 16, 0),
    };
    assert_eq!(store.reserve_budget("alice", 41, l, t).unwrap(), exceeded);
    assert_eq!(
        used(store, "alice", t),
        (60, 60),
        "a refused reservation changes nothing"
    );
    // The next UTC day starts from zero.
    let tomorrow = at(2026, 1, 16, 0);
    assert_eq!(
        store.reserve_budget("alice", 100, l, tomorrow).unwrap(),
        Reservation::Reserved
    );
    assert_eq!(used(store, "alice", tomorrow), (100, 160));
}

pub(super) fn monthly_limit_exceeded(store: &dyn Store) {
    let l = limits(Some(100), Some(150));
    let day1 = at(2024, 2, 28, 10);
    assert_eq!(
        store.reserve_budget("alice", 100, l, day1).unwrap(),
        Reservation::Reserved
    );
    // Both limits would be exceeded: the day is named first.
    let both = store.reserve_budget("alice", 60, l, day1).unwrap();
    assert!(
        matches!(
            both,
            Reservation::Exceeded {
                period: Period::Day,
                ..
            }
        ),
        "{both:?}"
    );
    // Leap day: a fresh day, but the month is nearly spent.
    let day2 = at(2024, 2, 29, 10);
    let exceeded = Reservation::Exceeded {
        period: Period::Month,
        limit: 150,
        used: 100,
        resets_at: at(2024, 3, 1, 0),
    };
    assert_eq!(
        store.reserve_budget("alice", 60, l, day2).unwrap(),
        exceeded
    );
    assert_eq!(used(store, "alice", day2), (0, 100));
    assert_eq!(
        store.reserve_budget("alice", 50, l, day2).unwrap(),
        Reservation::Reserved
    );
    assert_eq!(used(store, "alice", day2), (50, 150));
    // December's month resets at New Year.
    let dec = at(2025, 12, 31, 23);
    assert_eq!(
        store.reserve_budget("alice", 150, l, dec).unwrap(),
        Reservation::Exceeded {
            period: Period::Day,
            limit: 100,
            used: 0,
            resets_at: at(2026, 1, 1, 0),
        }
    );
    let monthly_only = limits(None, Some(150));
    assert_eq!(
        store
            .reserve_budget("alice", 140, monthly_only, dec)
            .unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        store
            .reserve_budget("alice", 11, monthly_only, dec)
            .unwrap(),
        Reservation::Exceeded {
            period: Period::Month,
            limit: 150,
            used: 140,
            resets_at: at(2026, 1, 1, 0),
        }
    );
}

pub(super) fn unlimited_still_counts(store: &dyn Store) {
    let t = at(2026, 6, 1, 0);
    let l = BudgetLimits::default();
    assert_eq!(
        store.reserve_budget("alice", 500 * USD, l, t).unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        store.reserve_budget("alice", i64::MAX, l, t).unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        used(store, "alice", t),
        (i64::MAX, i64::MAX),
        "saturates, never overflows"
    );
    // An overflowing sum never fits a limit.
    let capped = limits(Some(i64::MAX), None);
    assert!(matches!(
        store.reserve_budget("alice", 1, capped, t).unwrap(),
        Reservation::Exceeded {
            period: Period::Day,
            ..
        }
    ));
}

pub(super) fn release_gives_back_to_the_reserved_buckets(store: &dyn Store) {
    let l = BudgetLimits::default();
    let yesterday = at(2026, 3, 9, 22);
    let today = at(2026, 3, 10, 8);
    store.reserve_budget("alice", 300, l, yesterday).unwrap();
    store.reserve_budget("alice", 200, l, today).unwrap();
    assert_eq!(used(store, "alice", today), (200, 500));
    // Released to yesterday's day bucket (today's stays) and to the month.
    store.release_budget("alice", 300, yesterday).unwrap();
    assert_eq!(used(store, "alice", today), (200, 200));
    assert_eq!(used(store, "alice", yesterday), (0, 200));
    // Never below zero.
    store.release_budget("alice", 1_000, today).unwrap();
    assert_eq!(used(store, "alice", today), (0, 0));
    store.release_budget("nobody", 5, today).unwrap();
    assert_eq!(used(store, "nobody", today), (0, 0));
    // A released reservation frees room under the limit.
    let l = limits(Some(100), None);
    assert_eq!(
        store.reserve_budget("bob", 100, l, today).unwrap(),
        Reservation::Reserved
    );
    assert!(matches!(
        store.reserve_budget("bob", 1, l, today).unwrap(),
        Reservation::Exceeded { .. }
    ));
    store.release_budget("bob", 100, today).unwrap();
    assert_eq!(
        store.reserve_budget("bob", 100, l, today).unwrap(),
        Reservation::Reserved
    );
}

pub(super) fn negative_costs_are_rejected(store: &dyn Store) {
    let t = at(2026, 3, 10, 8);
    let err = store
        .reserve_budget("alice", -1, BudgetLimits::default(), t)
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = store.release_budget("alice", -1, t).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(used(store, "alice", t), (0, 0));
}

pub(super) fn usage_resets_with_the_period(store: &dyn Store) {
    let t = at(2026, 4, 30, 23);
    store
        .reserve_budget("alice", 70, BudgetLimits::default(), t)
        .unwrap();
    assert_eq!(used(store, "alice", t + 3_599), (70, 70));
    let next_month = at(2026, 5, 1, 0);
    assert_eq!(
        store.usage("alice", next_month).unwrap(),
        Usage {
            day_used: 0,
            month_used: 0,
            day_resets_at: at(2026, 5, 2, 0),
            month_resets_at: at(2026, 6, 1, 0),
        }
    );
    // Earlier in the month, the day has reset but the month has not.
    let t = at(2026, 4, 10, 12);
    store
        .reserve_budget("alice", 30, BudgetLimits::default(), t)
        .unwrap();
    assert_eq!(used(store, "alice", at(2026, 4, 11, 0)), (0, 100));
}

/// N threads race to reserve C against a limit of M*C: exactly M win.
pub(super) fn concurrent_reservations_admit_exactly_the_limit(store: &dyn Store) {
    const N: usize = 16;
    const M: i64 = 5;
    const C: i64 = 250_000;
    let t = at(2026, 3, 10, 8);
    for l in [limits(Some(M * C), None), limits(None, Some(M * C))] {
        let client = format!("client-{:?}", l.daily);
        let barrier = Barrier::new(N);
        let reserved = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..N)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        store.reserve_budget(&client, C, l, t).unwrap()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|r| *r == Reservation::Reserved)
                .count()
        });
        assert_eq!(reserved, usize::try_from(M).unwrap(), "{l:?}");
        assert_eq!(used(store, &client, t), (M * C, M * C), "{l:?}");
    }
}

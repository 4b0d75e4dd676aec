//! Helpers shared by the unit tests of several modules.

use std::future::Future;
use std::time::Duration;

/// `future`'s output, if its own wake-ups finish it within 5 s; a panic otherwise. (Not
/// `tokio::time::timeout`, which polls its future once more when it expires: a future whose
/// wake-up never comes would pass.)
pub async fn within_5s<F: Future>(future: F) -> F::Output {
    tokio::select! {
        biased;
        () = tokio::time::sleep(Duration::from_secs(5)) => panic!("not woken within 5 s"),
        output = future => output,
    }
}

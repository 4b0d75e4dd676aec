//! Cost arithmetic: what a validated job costs, in micro-USD. PURE.

use crate::config::PriceConfig;
use crate::validate::ValidatedInput;

/// Micro-USD per USD.
pub const MICROS_PER_USD: f64 = 1_000_000.0;

/// USD (config) to micro-USD (store), rounded to the nearest micro.
pub fn usd_to_micros(usd: f64) -> i64 {
    (usd * MICROS_PER_USD).round() as i64
}

/// Micro-USD to USD, for answers.
pub fn micros_to_usd(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_USD
}

/// The price of one job: `num_images` x the per-image price of its `resolution`, plus the
/// web-search surcharge when `enable_web_search` is on. Defaults are already applied to `input`.
pub fn job_cost(price: &PriceConfig, num_images: u64, resolution: &str, web_search: bool) -> i64 {
    let per_image = price
        .per_image
        .get(resolution)
        .copied()
        .unwrap_or(price.default_per_image);
    let images = usd_to_micros(per_image).saturating_mul(num_images.min(1_000) as i64);
    let surcharge = if web_search {
        usd_to_micros(price.web_search)
    } else {
        0
    };
    images.saturating_add(surcharge)
}

/// [`job_cost`] of a validated input.
pub fn input_cost(price: &PriceConfig, input: &ValidatedInput) -> i64 {
    job_cost(
        price,
        input.num_images(),
        input.resolution(),
        input.enable_web_search(),
    )
}

/// The cheapest single image this price table allows, for "images left" estimates.
pub fn cheapest_image(price: &PriceConfig) -> i64 {
    price
        .per_image
        .values()
        .copied()
        .chain([price.default_per_image])
        .map(usd_to_micros)
        .filter(|m| *m > 0)
        .min()
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn list_prices() {
        let p = PriceConfig::default();
        assert_eq!(job_cost(&p, 1, "1K", false), 150_000);
        assert_eq!(job_cost(&p, 4, "2K", false), 600_000);
        assert_eq!(job_cost(&p, 2, "4K", false), 600_000);
        assert_eq!(job_cost(&p, 1, "1K", true), 165_000);
        assert_eq!(
            job_cost(&p, 1, "8K", false),
            150_000,
            "unknown resolution: default price"
        );
        assert_eq!(cheapest_image(&p), 150_000);
        assert_eq!(micros_to_usd(165_000), 0.165);
    }

    proptest! {
        /// Cost grows with images, 4K never costs less than 1K, and web search only adds.
        #[test]
        fn cost_is_monotonic(n in 1u64..=4, web in any::<bool>()) {
            let p = PriceConfig::default();
            prop_assert!(job_cost(&p, n + 1, "1K", web) > job_cost(&p, n, "1K", web));
            prop_assert!(job_cost(&p, n, "4K", web) >= job_cost(&p, n, "1K", web));
            prop_assert!(job_cost(&p, n, "1K", true) >= job_cost(&p, n, "1K", false));
            prop_assert!(job_cost(&p, n, "2K", web) >= 0);
        }
    }
}

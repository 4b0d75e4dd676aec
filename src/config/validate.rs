//! Start-up validation of a parsed [`Config`]: every check names the key it is about.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{Config, ConfigError, ServerConfig};
use crate::cors::OriginPattern;
use crate::target::is_valid_endpoint_id;

impl Config {
    /// Checks every value that serde's types cannot: addresses, URLs, ranges, ids, patterns.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::invalid("listen", format!("`{}`: {e}", self.listen)))?;
        if let Some(url) = &self.public_url {
            check_base_url("public_url", url)?;
        }
        check_base_url("fal.queue_url", &self.fal.queue_url)?;
        check_base_url("fal.run_url", &self.fal.run_url)?;
        check_base_url("fal.rest_url", &self.fal.rest_url)?;
        if let Some(url) = &self.mock.public_url {
            check_base_url("mock.public_url", url)?;
        }
        for (i, prefix) in self.fal.allowed_webhook_urls.iter().enumerate() {
            let key = format!("fal.allowed_webhook_urls[{i}]");
            let rest = prefix.strip_prefix("https://").ok_or_else(|| {
                ConfigError::invalid(&key, "a webhook prefix must start with https://")
            })?;
            // The prefix must include at least the full host and a `/`, or `https://a.com` would
            // also admit `https://a.com.evil.net`.
            if !rest.contains('/') || rest.starts_with('/') {
                return Err(ConfigError::invalid(
                    key,
                    "a webhook prefix must name a host and end its host with `/` (e.g. https://hooks.example.com/fal/)",
                ));
            }
        }
        positive("fal.connect_timeout_secs", self.fal.connect_timeout_secs)?;
        positive("fal.request_timeout_secs", self.fal.request_timeout_secs)?;
        positive("fal.stream_timeout_secs", self.fal.stream_timeout_secs)?;
        if self.fal.retries > 10 {
            return Err(ConfigError::invalid("fal.retries", "at most 10"));
        }
        self.validate_server()?;
        self.validate_auth()?;
        for (i, origin) in self.cors.allowed_origins.iter().enumerate() {
            OriginPattern::parse(origin).map_err(|m| {
                ConfigError::invalid(
                    format!("cors.allowed_origins[{i}]"),
                    format!("`{origin}`: {m}"),
                )
            })?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::invalid("log.level", e.to_string()))?;
        if !(self.mock.queue_seconds >= 0.0 && self.mock.queue_seconds <= 600.0) {
            return Err(ConfigError::invalid("mock.queue_seconds", "0 to 600"));
        }
        if !(self.mock.progress_seconds >= 0.0 && self.mock.progress_seconds <= 600.0) {
            return Err(ConfigError::invalid("mock.progress_seconds", "0 to 600"));
        }
        self.validate_plans()?;
        self.validate_identity()?;
        self.validate_endpoints()
    }

    fn validate_plans(&self) -> Result<(), ConfigError> {
        for required in ["default", "anonymous"] {
            if !self.plans.contains_key(required) {
                return Err(ConfigError::invalid(
                    format!("plans.{required}"),
                    "this plan must exist",
                ));
            }
        }
        for (name, plan) in &self.plans {
            for (class, rate) in [
                ("submit", plan.submit),
                ("poll", plan.poll),
                ("upload", plan.upload),
            ] {
                check_rate(&format!("plans.{name}.{class}"), rate)?;
            }
            for (key, budget) in [
                ("daily_budget_usd", plan.daily_budget_usd),
                ("monthly_budget_usd", plan.monthly_budget_usd),
            ] {
                if budget.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
                    return Err(ConfigError::invalid(
                        format!("plans.{name}.{key}"),
                        "a number of USD, 0 or more",
                    ));
                }
            }
        }
        check_rate("limits.global_submit", self.limits.global_submit)?;
        positive(
            "limits.jobs_in_flight_timeout_secs",
            self.limits.jobs_in_flight_timeout_secs,
        )?;
        positive(
            "limits.idempotency_window_secs",
            self.limits.idempotency_window_secs * 0.01,
        )
        .map_err(|_| {
            ConfigError::invalid(
                "limits.idempotency_window_secs",
                "a number of seconds above 0 (at most 100 days)",
            )
        })?;
        positive(
            "store.job_retention_secs",
            self.store.job_retention_secs * 0.01,
        )
        .map_err(|_| {
            ConfigError::invalid(
                "store.job_retention_secs",
                "a number of seconds above 0 (at most 100 days)",
            )
        })?;
        positive(
            "store.cleanup_interval_secs",
            self.store.cleanup_interval_secs,
        )?;
        for (i, key) in self.auth.api_keys.iter().enumerate() {
            if !self.plans.contains_key(&key.plan) {
                return Err(ConfigError::invalid(
                    format!("auth.api_keys[{i}].plan"),
                    format!("no plan named `{}` under [plans]", key.plan),
                ));
            }
        }
        Ok(())
    }

    fn validate_identity(&self) -> Result<(), ConfigError> {
        for (i, cidr) in self.network.trusted_proxies.iter().enumerate() {
            let ok =
                cidr.parse::<ipnet::IpNet>().is_ok() || cidr.parse::<std::net::IpAddr>().is_ok();
            if !ok {
                return Err(ConfigError::invalid(
                    format!("network.trusted_proxies[{i}]"),
                    format!("`{cidr}` is not an IP address or CIDR (10.0.0.0/8, fd00::/8)"),
                ));
            }
        }
        let Some(jwt) = &self.auth.jwt else {
            return Ok(());
        };
        if jwt.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                "auth.jwt.algorithms",
                "name at least one algorithm",
            ));
        }
        for (i, alg) in jwt.algorithms.iter().enumerate() {
            let key = format!("auth.jwt.algorithms[{i}]");
            match alg.as_str() {
                "HS256" => {
                    if jwt.hs256_secret.is_none() && jwt.hs256_secret_file.is_none() {
                        return Err(ConfigError::invalid(
                            "auth.jwt.hs256_secret",
                            "HS256 needs hs256_secret (or FAL_PROXY_AUTH__JWT__HS256_SECRET) or hs256_secret_file",
                        ));
                    }
                }
                "RS256" | "ES256" | "EdDSA" => match &jwt.jwks_url {
                    Some(url) => check_base_url("auth.jwt.jwks_url", url.trim_end_matches('/'))?,
                    None => {
                        return Err(ConfigError::invalid(
                            "auth.jwt.jwks_url",
                            format!("{alg} needs a jwks_url to fetch public keys from"),
                        ));
                    }
                },
                other => {
                    return Err(ConfigError::invalid(
                        key,
                        format!("`{other}` is not supported (HS256, RS256, ES256, EdDSA)"),
                    ));
                }
            }
        }
        if jwt.issuer.trim().is_empty() {
            return Err(ConfigError::invalid(
                "auth.jwt.issuer",
                "the required `iss` must be set",
            ));
        }
        if jwt.audience.trim().is_empty() {
            return Err(ConfigError::invalid(
                "auth.jwt.audience",
                "the required `aud` must be set",
            ));
        }
        if jwt.client_id_claim.trim().is_empty() {
            return Err(ConfigError::invalid(
                "auth.jwt.client_id_claim",
                "name a claim",
            ));
        }
        if !self.plans.contains_key(&jwt.default_plan) {
            return Err(ConfigError::invalid(
                "auth.jwt.default_plan",
                format!("no plan named `{}` under [plans]", jwt.default_plan),
            ));
        }
        positive("auth.jwt.jwks_cache_secs", jwt.jwks_cache_secs)?;
        positive("auth.jwt.jwks_min_refresh_secs", jwt.jwks_min_refresh_secs)?;
        Ok(())
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let path = &self.server.compat_path;
        let reserved = ["/queue", "/run", "/healthz", "/readyz", "/_mock", "/v1"];
        if !path.starts_with('/')
            || path.len() < 2
            || path.ends_with('/')
            || !path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
            || reserved
                .iter()
                .any(|r| path == r || path.starts_with(&format!("{r}/")))
        {
            return Err(ConfigError::invalid(
                "server.compat_path",
                format!(
                    "`{path}`: must be an absolute path like /api/fal/proxy, not under a built-in route"
                ),
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "server.max_body_bytes",
                "at least 1024",
            ));
        }
        positive(
            "server.header_read_timeout_secs",
            self.server.header_read_timeout_secs,
        )?;
        positive(
            "server.body_read_timeout_secs",
            self.server.body_read_timeout_secs,
        )?;
        positive(
            "server.body_total_timeout_secs",
            self.server.body_total_timeout_secs,
        )?;
        if !(self.server.shutdown_grace_secs >= 0.0 && self.server.shutdown_grace_secs <= 3600.0) {
            return Err(ConfigError::invalid(
                "server.shutdown_grace_secs",
                "0 to 3600",
            ));
        }
        if self.server.max_concurrent_requests == 0 {
            return Err(ConfigError::invalid(
                "server.max_concurrent_requests",
                "at least 1",
            ));
        }
        if self.server.workers > ServerConfig::MAX_WORKERS {
            return Err(ConfigError::invalid(
                "server.workers",
                format!(
                    "0 (one per core) to {}, not {}",
                    ServerConfig::MAX_WORKERS,
                    self.server.workers
                ),
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let mut ids = HashSet::new();
        for (i, key) in self.auth.api_keys.iter().enumerate() {
            if key.id.trim().is_empty() || key.id.len() > 128 {
                return Err(ConfigError::invalid(
                    format!("auth.api_keys[{i}].id"),
                    "1 to 128 characters",
                ));
            }
            if key.id.starts_with("ip:") || key.id.starts_with("jwt:") {
                return Err(ConfigError::invalid(
                    format!("auth.api_keys[{i}].id"),
                    "ids starting with `ip:` or `jwt:` are reserved for anonymous and JWT clients",
                ));
            }
            if !ids.insert(key.id.as_str()) {
                return Err(ConfigError::invalid(
                    format!("auth.api_keys[{i}].id"),
                    format!("`{}` appears twice", key.id),
                ));
            }
            let hash = key.key_sha256.expose();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::invalid(
                    format!("auth.api_keys[{i}].key_sha256"),
                    "must be 64 hex digits (the SHA-256 of the key; `fal-proxy keygen` prints it)",
                ));
            }
        }
        Ok(())
    }

    fn validate_endpoints(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::invalid(
                "endpoints",
                "at least one [[endpoints]] entry is needed",
            ));
        }
        let mut ids = HashSet::new();
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if !is_valid_endpoint_id(&endpoint.id) {
                return Err(ConfigError::invalid(
                    format!("endpoints[{i}].id"),
                    format!(
                        "`{}` is not a fal endpoint id (owner/alias[/path])",
                        endpoint.id
                    ),
                ));
            }
            if !ids.insert(endpoint.id.as_str()) {
                return Err(ConfigError::invalid(
                    format!("endpoints[{i}].id"),
                    format!("`{}` appears twice", endpoint.id),
                ));
            }
            if endpoint.max_num_images == Some(0) {
                return Err(ConfigError::invalid(
                    format!("endpoints[{i}].max_num_images"),
                    "at least 1",
                ));
            }
            let price = &endpoint.price;
            let prices = price
                .per_image
                .values()
                .chain([&price.default_per_image, &price.web_search]);
            for p in prices {
                if !(p.is_finite() && *p >= 0.0) {
                    return Err(ConfigError::invalid(
                        format!("endpoints[{i}].price"),
                        "prices are USD amounts, 0 or more",
                    ));
                }
            }
            for (j, host) in endpoint.image_url_hosts.iter().enumerate() {
                let bare = host.strip_prefix("*.").unwrap_or(host);
                if bare.is_empty()
                    || !bare
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    return Err(ConfigError::invalid(
                        format!("endpoints[{i}].image_url_hosts[{j}]"),
                        format!("`{host}`: a host name or *.domain"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_rate(key: &str, rate: crate::config::RateConfig) -> Result<(), ConfigError> {
    if !(rate.per_minute.is_finite() && rate.per_minute > 0.0 && rate.per_minute <= 6_000_000.0) {
        return Err(ConfigError::invalid(
            format!("{key}.per_minute"),
            "a rate above 0 (at most 100000 per second)",
        ));
    }
    if rate.burst == 0 {
        return Err(ConfigError::invalid(format!("{key}.burst"), "at least 1"));
    }
    Ok(())
}

fn positive(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            "a number of seconds above 0 (at most 86400)",
        ))
    }
}

fn check_base_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ConfigError::invalid(key, format!("`{url}` is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(ConfigError::invalid(
                key,
                format!("`{url}` must start with http:// or https://"),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) || uri.query().is_some() || url.ends_with('/') {
        return Err(ConfigError::invalid(
            key,
            format!("`{url}` must be scheme://host[:port][/path] with no query and no trailing /"),
        ));
    }
    Ok(())
}

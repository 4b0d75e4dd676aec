//! The command line: `serve` (the default), `check-config`, `keygen` and `mock-fal`.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::app::{self, AppInputs};
use crate::config::{self, Config, ConfigError, LogFormat, Secret};
use crate::mock::MockFal;
use crate::server::{self, ServeOptions};
use crate::validate::Validators;

/// fal-proxy: a server-side authenticating, validating proxy for fal.ai's queue API.
///
/// Holds FAL_KEY on the server, authenticates callers, validates every job against the
/// endpoint's input schema before money is spent, and relays fal's queue API (status, live
/// status streams, results) to browsers and apps. The official fal clients work unchanged with
/// `proxyUrl` pointed at /api/fal/proxy.
///
/// The fal key comes from FAL_KEY, or FAL_KEY_ID + FAL_KEY_SECRET, or the file named by the
/// config key fal.key_file. Every config key can be overridden by an environment variable
/// `FAL_PROXY_<KEY>` with `__` between nesting levels (e.g. `FAL_PROXY_FAL__QUEUE_URL`).
#[derive(Debug, Parser)]
#[command(name = "fal-proxy", version, about, long_about)]
pub struct Cli {
    /// A TOML config file layered over the embedded defaults (see config/default.toml).
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run with an embedded fake of fal (no key, no internet): jobs, status streams, results
    /// with generated images, uploads. Anonymous access is on unless API keys are configured.
    #[arg(long, global = true)]
    pub mock: bool,
    /// Log one JSON object per line instead of human-readable lines (same as log.format=json).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate the configuration and every schema, then print the effective config with
    /// secrets redacted. Exits non-zero, naming the key or file, on any error.
    CheckConfig,
    /// Print a new random client API key and the [[auth.api_keys]] entry to paste into config.
    Keygen {
        /// The client id the key authenticates as.
        #[arg(long)]
        id: String,
    },
    /// Probe this proxy's /healthz on its configured listen address (for container
    /// HEALTHCHECKs: the runtime image has no curl). Exits 0 when healthy.
    Healthcheck,
    /// Run only the fake of fal, for frontend development and tests. Point the proxy's
    /// fal.queue_url / run_url / rest_url at ADDR's /queue, /run and /rest.
    MockFal {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
    },
}

/// Runs the chosen command; the error is printed by `main`.
pub fn run(cli: Cli) -> Result<(), String> {
    match &cli.command {
        Some(Command::Keygen { id }) => {
            keygen(id);
            Ok(())
        }
        Some(Command::Healthcheck) => {
            let (config, _) = config::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
            healthcheck(&config)
        }
        Some(Command::CheckConfig) => check_config(&cli).map_err(|e| e.to_string()),
        Some(Command::MockFal { listen }) => {
            let (config, _) = load(&cli).map_err(|e| e.to_string())?;
            runtime()?.block_on(mock_fal(config, *listen))
        }
        Some(Command::Serve) | None => {
            let (config, source) = load(&cli).map_err(|e| e.to_string())?;
            server::worker_runtime()?.block_on(serve(config, source, cli.mock))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn load(cli: &Cli) -> Result<(Config, config::ConfigSource), ConfigError> {
    let (mut config, source) = config::load(cli.config.as_deref())?;
    if cli.log_json {
        config.log.format = LogFormat::Json;
    }
    crate::log::init(config.log.format, &config.log.level);
    Ok((config, source))
}

fn keygen(id: &str) {
    let (key, hash) = crate::auth::generate_key();
    println!("# Give this key to the client `{id}` (shown once; only its hash is stored):");
    println!("#   {key}");
    println!("[[auth.api_keys]]");
    println!("id = {}", toml_string(id));
    println!("key_sha256 = \"{hash}\"");
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn healthcheck(config: &Config) -> Result<(), String> {
    use std::io::{Read, Write};
    let listen: SocketAddr = config.listen.parse().map_err(|e| format!("listen: {e}"))?;
    let addr = server::reachable(listen);
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    if &head == b"HTTP/1.1 200" {
        Ok(())
    } else {
        Err(format!("unhealthy: {}", String::from_utf8_lossy(&head)))
    }
}

fn check_config(cli: &Cli) -> Result<(), ConfigError> {
    let (config, source) = config::load(cli.config.as_deref())?;
    let schemas = config::load_schemas(&config, &source)?;
    Validators::compile(&config, schemas)?;
    let key = config::resolve_fal_key(&config, |n| std::env::var(n).ok())?;
    let text = toml::to_string_pretty(&config)
        .map_err(|e| ConfigError::Parse(format!("cannot print the config: {e}")))?;
    println!("# effective configuration ({})", describe(&source));
    println!(
        "# fal key: {}",
        if key.is_some() {
            "set (*****)"
        } else {
            "NOT SET (only --mock can run)"
        }
    );
    print!("{text}");
    eprintln!(
        "config OK: {} endpoint(s), schemas compiled",
        config.endpoints.len()
    );
    Ok(())
}

fn describe(source: &config::ConfigSource) -> String {
    match source {
        config::ConfigSource::Embedded => "embedded defaults + environment".into(),
        config::ConfigSource::File(p) => format!("{} + environment", p.display()),
    }
}

async fn serve(mut config: Config, source: config::ConfigSource, mock: bool) -> Result<(), String> {
    let fal_key =
        config::resolve_fal_key(&config, |n| std::env::var(n).ok()).map_err(|e| e.to_string())?;
    let listen: SocketAddr = config.listen.parse().map_err(|e| format!("listen: {e}"))?;
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (fal_key, anonymous, mock_router) = if mock {
        if config.mock.public_url.is_none() {
            config.mock.public_url = config.public_url.as_ref().map(|p| format!("{p}/_mock"));
        }
        let fake = MockFal::new(&config.mock, "/_mock");
        let origin = format!("http://{}", server::reachable(addr));
        let (queue, run, rest) = fake.base_urls(&origin);
        (
            config.fal.queue_url,
            config.fal.run_url,
            config.fal.rest_url,
        ) = (queue, run, rest);
        let anonymous = config.auth.anonymous || config.auth.api_keys.is_empty();
        (
            fal_key.unwrap_or_else(|| Secret::new("mock-fal-key")),
            anonymous,
            Some(fake.router()),
        )
    } else {
        let key = fal_key.ok_or_else(|| ConfigError::MissingFalKey.to_string())?;
        (key, config.auth.anonymous, None)
    };
    let schemas = config::load_schemas(&config, &source).map_err(|e| e.to_string())?;
    let options = ServeOptions::from_config(&config.server);
    let workers = config.server.worker_count();
    let playground = config.playground.enabled.unwrap_or(mock);
    let (router, state) = app::build(
        config,
        AppInputs {
            schemas,
            fal_key,
            anonymous,
            mock: mock_router,
            playground,
            store: None,
        },
    )
    .map_err(|e| e.to_string())?;
    tracing::info!(
        %addr,
        mock,
        anonymous,
        workers,
        endpoints = state.config.endpoints.len(),
        "fal-proxy listening"
    );
    if mock {
        tracing::info!("mock mode: fal is faked in-process at http://{addr}/_mock");
    }
    // Warm the JWKS cache so the first token does not wait for it (no-op without JWKS).
    tokio::spawn({
        let state = state.clone();
        async move { state.auth.prefetch().await }
    });
    let shutdown = {
        let state = state.clone();
        async move {
            server::shutdown_signal().await;
            state
                .draining
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!("shutdown signal received");
        }
    };
    server::serve_workers(listener, router, options, workers, shutdown).await
}

async fn mock_fal(config: Config, listen: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let fake = MockFal::new(&config.mock, "");
    let (queue, run, rest) = fake.base_urls(&format!("http://{addr}"));
    tracing::info!(%addr, "mock fal listening");
    println!("FAL_PROXY_FAL__QUEUE_URL={queue}");
    println!("FAL_PROXY_FAL__RUN_URL={run}");
    println!("FAL_PROXY_FAL__REST_URL={rest}");
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(10),
        grace: Duration::from_secs(5),
    };
    server::serve(listener, fake.router(), options, server::shutdown_signal()).await;
    Ok(())
}

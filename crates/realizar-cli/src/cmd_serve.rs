//! `realizar serve`: the OpenAI- and Ollama-compatible HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args as ClapArgs, ValueEnum};
use realizar_runtime::models::{resolve_model, KNOWN_MODELS};
use realizar_runtime::TemplateChoice;
use realizar_server::{load_engine, LocalOptions, Server, ServerConfig};

use crate::{CliError, CliResult};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `realizar serve`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A model to serve: a known name (smollm2-135m, gemma3-270m, minilm-l6), a .gguf file
    /// (text generation) or a Hugging Face BERT directory (embeddings). Repeat for several.
    #[arg(long = "model", short = 'm', required = true)]
    pub models: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Sequences decoded together (KV cache slots) per generation model.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for a slot; more get 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Context length of each slot (positions).
    #[arg(long, default_value_t = 2048)]
    pub ctx: usize,
    /// Compute threads (default: physical cores).
    #[arg(long, value_parser = realizar_runtime::threads::parse_threads)]
    pub threads: Option<usize>,
    /// Require `Authorization: Bearer <KEY>` on every endpoint but /health (default: the
    /// `REALIZAR_API_KEY` environment variable).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub max_body: usize,
    /// Seconds in-flight requests may take to finish after SIGINT/SIGTERM (a second signal
    /// stops at once).
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Connections served at once (at most what the file-descriptor limit allows, which is
    /// raised to its hard limit at start). A few more are answered `/health` and 503; the
    /// rest are closed at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's header (and a kept-alive connection may
    /// stay idle).
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a client may take to send a request's body.
    #[arg(long, default_value_t = 30)]
    pub body_timeout: u64,
    /// Read control-token texts (`<|im_start|>`) inside chat messages and completion prompts
    /// as control tokens, as llama.cpp's server does. By default a message's content is plain
    /// text, so that a user cannot write turns of their own into a conversation;
    /// `/v1/completions` and `/tokenize` then parse them only when a request sets
    /// `"parse_special": true`.
    #[arg(long)]
    pub parse_special: bool,
    /// Read the model files into memory instead of mapping them: costs their size in memory
    /// and a full read at start, and makes the server immune to a model file being truncated
    /// or rewritten on disk while it runs (a mapped file that changes is detected and its
    /// requests refused with 503 until a restart).
    #[arg(long)]
    pub no_mmap: bool,
    /// The chat template of every model served: one of llama.cpp's built-in names (chatml,
    /// gemma, llama3, phi3, mistral-v7, ...) or a Jinja template file. Without it a model uses
    /// its file's template, else its family's built-in one.
    #[arg(long, value_name = "NAME|FILE", value_parser = TemplateChoice::from_arg)]
    pub chat_template: Option<TemplateChoice>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REALIZAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn validate(args: &Args) -> Result<(), CliError> {
    if args.parallel == 0 || args.parallel > 256 {
        return Err(CliError::invalid(format!(
            "--parallel must be between 1 and 256, got {}",
            args.parallel
        )));
    }
    if args.ctx < 8 {
        return Err(CliError::invalid(format!(
            "--ctx must be at least 8, got {}",
            args.ctx
        )));
    }
    if args.max_body < 1024 {
        return Err(CliError::invalid(format!(
            "--max-body must be at least 1024 bytes, got {}",
            args.max_body
        )));
    }
    if args.threads == Some(0) {
        return Err(CliError::invalid("--threads must be positive"));
    }
    if args.api_key.as_deref() == Some("") {
        return Err(CliError::invalid("--api-key must not be empty"));
    }
    for (name, v) in [
        ("--header-timeout", args.header_timeout),
        ("--body-timeout", args.body_timeout),
    ] {
        if v == 0 || v > 3600 {
            return Err(CliError::invalid(format!(
                "{name} must be between 1 and 3600 seconds, got {v}"
            )));
        }
    }
    if args.drain_timeout > 3600 {
        return Err(CliError::invalid(format!(
            "--drain-timeout must be at most 3600 seconds, got {}",
            args.drain_timeout
        )));
    }
    if args.max_connections == 0 {
        return Err(CliError::invalid("--max-connections must be positive"));
    }
    Ok(())
}

/// Descriptors kept for what is not a served connection: the model files, the runtime, the
/// connections answered over the cap.
const RESERVED_FDS: u64 = 64 + realizar_server::OVERFLOW_CONNECTIONS as u64;

/// Raises the soft file-descriptor limit to the hard one and fits the connection cap under it.
fn connection_cap(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the file-descriptor limit");
            return wanted;
        }
    };
    let fit = usize::try_from(limit.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
    if fit < wanted {
        tracing::warn!(
            fd_limit = limit,
            max_connections = fit,
            "the file-descriptor limit allows fewer connections than --max-connections"
        );
    }
    wanted.min(fit)
}

/// glibc's malloc raises its mmap threshold after freeing a large block, so a burst of large
/// requests (bodies, their tokens) is served from heap arenas that it never gives back: the
/// server stayed at 303 MB after 50 concurrent 1.9 MB `/tokenize` requests from 205 MB idle.
/// With the threshold fixed, large blocks are mapped and unmapped and the server returns to
/// its idle size (207 MB), with no change in decode speed. glibc reads the setting from the
/// environment only at start, so the server restarts itself once with it (same process id)
/// unless `GLIBC_TUNABLES` already sets it or `REALIZAR_NO_MALLOC_TUNING` is set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    use std::os::unix::process::CommandExt;
    const KEY: &str = "glibc.malloc.mmap_threshold";
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains(KEY) || std::env::var_os("REALIZAR_NO_MALLOC_TUNING").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let setting = format!("{KEY}=131072");
    let tunables = if current.is_empty() {
        setting
    } else {
        format!("{current}:{setting}")
    };
    let mut argv = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = argv.next() {
        cmd.arg0(arg0);
    }
    // Returns only when the restart failed; the server then runs as it is.
    let err = cmd.args(argv).env("GLIBC_TUNABLES", tunables).exec();
    eprintln!("realizar: could not restart with malloc tuning ({err}); continuing without");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(mut args: Args) -> CliResult {
    tune_malloc();
    if args.api_key.is_none() {
        args.api_key = std::env::var("REALIZAR_API_KEY").ok();
    }
    validate(&args)?;
    init_logging(args.log_format);
    let models: Vec<(String, PathBuf)> = args
        .models
        .iter()
        .map(|m| {
            let path = resolve_model(m);
            let id = if KNOWN_MODELS.iter().any(|(n, _)| n == m) {
                m.clone()
            } else {
                let stem = path
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| m.clone());
                stem.strip_suffix(".gguf")
                    .map(str::to_string)
                    .unwrap_or(stem)
            };
            (id, path)
        })
        .collect();
    for (_, p) in &models {
        if !p.exists() {
            return Err(CliError::Io(anyhow::anyhow!(
                "model {} not found (run `cargo xtask fetch-models` for the known names)",
                p.display()
            )));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("realizar-http")
        .enable_all()
        .build()
        .map_err(CliError::io)?;
    let result = rt.block_on(serve(args, models));
    // A model still loading when a signal came is not waited for.
    rt.shutdown_background();
    result
}

/// The first SIGINT/SIGTERM starts the graceful shutdown (`first`); the second stops at once
/// (`second`).
fn signals() -> (
    impl std::future::Future<Output = ()>,
    impl std::future::Future<Output = ()>,
) {
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let (second_tx, second_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // One pair of listeners for both signals, so that each delivery counts once.
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                tracing::warn!("cannot listen for SIGINT/SIGTERM");
                return;
            };
            let first = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            tracing::info!(signal = first, "shutting down gracefully");
            let _ = first_tx.send(());
            let second = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            tracing::warn!(signal = second, "second signal: stopping at once");
            let _ = second_tx.send(());
        }
        #[cfg(not(unix))]
        {
            realizar_server::shutdown_signal().await;
            let _ = first_tx.send(());
            realizar_server::shutdown_signal().await;
            let _ = second_tx.send(());
        }
    });
    (
        async move {
            let _ = first_rx.await;
        },
        async move {
            if second_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        },
    )
}

async fn serve(args: Args, models: Vec<(String, PathBuf)>) -> CliResult {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))
        .map_err(CliError::Io)?;
    let addr: SocketAddr = listener.local_addr().map_err(CliError::io)?;
    let server = Server::new(ServerConfig {
        api_key: args.api_key.clone(),
        max_body: args.max_body,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        max_connections: connection_cap(args.max_connections),
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        parse_special: args.parse_special,
    });
    let handle = server.handle();
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<()>();
    let (first, second) = signals();
    let shutdown = async move {
        tokio::select! {
            () = first => {}
            _ = fail_rx => {}
        }
    };
    let mut serving = tokio::spawn(server.serve_until(listener, shutdown, second));
    announce(&format!("realizar: listening on http://{addr}"));
    tracing::info!(%addr, "listening (loading models; /health is 503 until ready)");

    let opts = LocalOptions {
        id: None,
        threads: args.threads,
        ctx: Some(args.ctx),
        parallel: args.parallel,
        queue: args.queue,
        mmap: !args.no_mmap,
        chat_template: args.chat_template.clone(),
        ..LocalOptions::default()
    };
    let loading = tokio::task::spawn_blocking(move || {
        let mut engines = Vec::new();
        for (id, path) in models {
            let o = LocalOptions {
                id: Some(id.clone()),
                ..opts.clone()
            };
            let t0 = std::time::Instant::now();
            let e = load_engine(&path, &o)?;
            tracing::info!(model = %id, path = %path.display(), ms = t0.elapsed().as_millis() as u64, "model loaded");
            engines.push(e);
        }
        Ok::<_, realizar_server::ServerError>(engines)
    });
    // A signal during loading stops the server at once; the load is abandoned.
    let loaded = tokio::select! {
        loaded = loading => loaded,
        served = &mut serving => {
            tracing::info!("stopped while loading");
            return match served {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(CliError::io(e)),
                Err(e) => Err(CliError::io(format!("server task failed: {e}"))),
            };
        }
    };
    let load_error = match loaded {
        Ok(Ok(engines)) => {
            for e in engines {
                handle.add_model(Arc::clone(&e));
            }
            handle.set_ready(true);
            announce("realizar: ready");
            tracing::info!("ready");
            None
        }
        Ok(Err(e)) => Some(CliError::invalid(e)),
        Err(e) => Some(CliError::io(format!("model loading failed: {e}"))),
    };
    if load_error.is_some() {
        let _ = fail_tx.send(());
    }
    let served = serving.await;
    if let Some(e) = load_error {
        return Err(e);
    }
    match served {
        Ok(Ok(())) => {
            tracing::info!("stopped");
            Ok(())
        }
        Ok(Err(e)) => Err(CliError::io(e)),
        Err(e) => Err(CliError::io(format!("server task failed: {e}"))),
    }
}

/// A status line on stdout for scripts that wait for it; a closed or full stdout does not stop
/// the server (the same line is in the logs).
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

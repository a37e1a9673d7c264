//! `cargo xtask serve` and `cargo xtask loadtest`: run the server on the default models.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::loadtest::{self, LoadOptions};
use crate::{models, root, run_cmd};

/// The release `realizar` binary, built if needed (bench uses it too).
pub(crate) fn build_release() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_cmd(Command::new(cargo).current_dir(root()).args([
        "build",
        "--release",
        "-p",
        "realizar-cli",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(target.join("release").join("realizar"))
}

fn server_command(bin: &PathBuf, port: u16, extra: &[String]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(root())
        .env("REALIZAR_MODELS", models::models_dir())
        .args([
            "serve",
            "--model",
            "smollm2-135m",
            "--model",
            "minilm-l6",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(extra);
    cmd
}

/// `cargo xtask serve [extra args for realizar serve]`.
pub fn serve(extra: &[String]) -> Result<()> {
    models::fetch_all(&models::models_dir())?;
    let bin = build_release()?;
    println!(
        "Serving SmolLM2-135M (chat) and all-MiniLM-L6-v2 (embeddings) on http://127.0.0.1:8080"
    );
    println!("Try:");
    println!(
        "  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n    -d '{{\"model\":\"smollm2-135m\",\"messages\":[{{\"role\":\"user\",\"content\":\"What is 2+2?\"}}]}}'"
    );
    println!(
        "  curl http://127.0.0.1:8080/v1/embeddings -H 'Content-Type: application/json' \\\n    -d '{{\"model\":\"minilm-l6\",\"input\":\"hello world\"}}'"
    );
    println!("Press Ctrl-C to stop.");
    let status = server_command(&bin, 8080, extra)
        .status()
        .context("cannot start realizar serve")?;
    if !status.success() {
        bail!("realizar serve exited with {status}");
    }
    Ok(())
}

/// A server child process on an ephemeral port, ready.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Running {
    fn start(bin: &PathBuf, extra: &[String]) -> Result<Running> {
        let mut child = server_command(bin, 0, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start realizar serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(120) {
            let Some(line) = lines.next() else { break };
            let line = line?;
            if let Some(a) = line.strip_prefix("realizar: listening on http://") {
                addr = Some(a.trim().parse::<SocketAddr>()?);
            }
            if line.starts_with("realizar: ready") {
                break;
            }
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            bail!("the server did not report its address");
        };
        // Keep draining stdout so that the child never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Ok(Running { child, addr })
    }

    /// SIGTERM, then wait; the server must exit 0.
    fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        run_cmd(Command::new("kill").args(["-TERM", &pid]))?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the server exited with {status} after SIGTERM");
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cargo xtask loadtest [--clients N] [--requests N] [--max-tokens N] [--parallel N]
/// [--disconnect-every N] [--ignore-eos]`.
pub fn loadtest(args: &[String]) -> Result<()> {
    let mut opts = LoadOptions::default();
    let mut parallel = 8usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<usize> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--clients" => opts.clients = num("--clients")?.clamp(1, 256),
            "--requests" => opts.requests = num("--requests")?.clamp(1, 1000),
            "--max-tokens" => opts.max_tokens = num("--max-tokens")?.clamp(1, 1024),
            "--parallel" => parallel = num("--parallel")?.clamp(1, 64),
            "--disconnect-every" => opts.disconnect_every = num("--disconnect-every")?,
            "--ignore-eos" => opts.ignore_eos = true,
            other => bail!("unknown loadtest argument `{other}`"),
        }
    }
    models::fetch_all(&models::models_dir())?;
    let bin = build_release()?;
    let server = Running::start(
        &bin,
        &[
            "--parallel".into(),
            parallel.to_string(),
            "--queue".into(),
            "512".into(),
        ],
    )?;
    let pid = server.child.id();
    println!(
        "server on http://{} (pid {pid}, {parallel} slots)",
        server.addr
    );
    // Warm-up: one round at full concurrency, no disconnects.
    let warm = LoadOptions {
        requests: 1,
        disconnect_every: 0,
        ..opts.clone()
    };
    let w = loadtest::run(server.addr, &warm).map_err(anyhow::Error::msg)?;
    let rss_warm = loadtest::rss_kib(pid).unwrap_or(0);
    println!("warm-up: {}", w.summary());
    let rep = loadtest::run(server.addr, &opts).map_err(anyhow::Error::msg)?;
    let rss_end = loadtest::rss_kib(pid).unwrap_or(0);
    println!(
        "load ({} clients x {} requests, {} tokens each):\n{}",
        opts.clients,
        opts.requests,
        opts.max_tokens,
        rep.summary()
    );
    println!(
        "server RSS: {} MiB after warm-up, {} MiB at the end",
        rss_warm / 1024,
        rss_end / 1024
    );
    for f in rep.failures.iter().take(5) {
        println!("failure: {f}");
    }
    server.stop()?;
    if !w.is_clean() || !rep.is_clean() {
        bail!("the load test saw failures");
    }
    if rss_warm > 0 && rss_end as f64 > rss_warm as f64 * 1.10 {
        bail!("server RSS grew by more than 10% ({rss_warm} KiB -> {rss_end} KiB)");
    }
    Ok(())
}

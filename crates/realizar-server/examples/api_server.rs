//! Embed the Realizar server in your own program, with a model you load yourself.
//!
//! ```text
//! cargo run --release -p realizar-server --example api_server -- models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf [PORT]
//! curl http://127.0.0.1:8080/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}]}'
//! ```
//!
//! The model is loaded with [`LocalEngine::load`] (any GGUF decoder with a chat template); an
//! engine of your own works the same way: implement [`realizar_server::Engine`] and hand it to
//! [`realizar_server::ServerHandle::add_model`].

use std::path::PathBuf;
use std::sync::Arc;

use realizar_server::{shutdown_signal, LocalEngine, LocalOptions, Server, ServerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf".into()),
    );
    let port: u16 = match args.next() {
        Some(p) => p.parse()?,
        None => 8080,
    };

    // Load the model yourself: 2 slots decoded together, 1024 positions each.
    let engine = LocalEngine::load(
        &path,
        &LocalOptions {
            id: Some("my-model".into()),
            parallel: 2,
            ctx: Some(1024),
            ..LocalOptions::default()
        },
    )?;

    let server = Server::new(ServerConfig::default());
    server.handle().add_model(Arc::new(engine));
    server.handle().set_ready(true);

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!(
            "serving {} as `my-model` on http://{}",
            path.display(),
            listener.local_addr()?
        );
        server.serve(listener, shutdown_signal()).await?;
        Ok(())
    })
}

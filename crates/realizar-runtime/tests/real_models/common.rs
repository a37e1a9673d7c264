//! Paths to the real models and the reference files.
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The models folder (`REALIZAR_MODELS`, else `<workspace>/models`).
pub fn models_dir() -> PathBuf {
    std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models"))
}

/// The path of a fetched model; panics with the command that fetches it when it is missing.
pub fn model_path(name: &str) -> PathBuf {
    let dir = models_dir().join(name);
    let path = match name {
        "smollm2-135m" => dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "gemma3-270m" => dir.join("gemma-3-270m-Q4_K_M.gguf"),
        _ => dir,
    };
    assert!(
        path.exists(),
        "model {name} not found at {}: run `cargo xtask fetch-models`",
        path.display()
    );
    path
}

/// The reference folder (`REALIZAR_REFS`, else `<workspace>/../shared/refs`).
pub fn refs_dir() -> PathBuf {
    let dir = std::env::var_os("REALIZAR_REFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/refs"));
    assert!(
        dir.exists(),
        "reference folder {} not found (set REALIZAR_REFS)",
        dir.display()
    );
    dir
}

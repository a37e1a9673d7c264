//! A failing stdout (a full disk: `/dev/full`) is an I/O error of the command: exit code 1 and
//! one `error:` line on stderr, never a panic, for every command that prints.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn models_dir() -> PathBuf {
    std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

fn model(name: &str, file: &str) -> String {
    let p = models_dir().join(name).join(file);
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask fetch-models`",
        p.display()
    );
    p.display().to_string()
}

#[test]
fn a_full_stdout_exits_1_without_a_panic() {
    let smol = model("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf");
    let minilm = models_dir().join("minilm-l6").display().to_string();
    let text = std::env::temp_dir().join(format!("realizar-full-{}.txt", std::process::id()));
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. ".repeat(20),
    )
    .expect("write the text");
    let text = text.display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["tokenize", "--model", &smol, "--text", "hello"],
        vec!["tokenize", "--model", &smol, "--text", "hello", "--json"],
        vec!["detokenize", "--model", &smol, "--ids", "1,2,3"],
        vec!["embed", "--model", &minilm, "--text", "hello"],
        vec!["embed", "--model", &minilm, "--text", "hello", "--json"],
        vec![
            "perplexity",
            "--model",
            &smol,
            "--file",
            &text,
            "--ctx",
            "64",
        ],
        vec![
            "generate",
            "--model",
            &smol,
            "--prompt",
            "Hi",
            "--max-tokens",
            "2",
        ],
        vec![
            "generate",
            "--model",
            &smol,
            "--prompt",
            "Hi",
            "--max-tokens",
            "2",
            "--json",
        ],
        vec!["score", "--model", &smol, "--prompt-ids", "1,2,3", "--json"],
        vec!["inspect", &smol],
        vec!["--help"],
        vec!["generate", "--help"],
        vec!["--version"],
    ];
    for args in &commands {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let out = Command::new(env!("CARGO_BIN_EXE_realizar"))
            .args(args)
            .args(
                ["--threads", "2"]
                    .iter()
                    .filter(|_| matches!(args[0], "perplexity" | "generate" | "score")),
            )
            .stdout(Stdio::from(full))
            .output()
            .expect("run realizar");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
    }
    let _ = std::fs::remove_file(&text);
}

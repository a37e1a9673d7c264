//! A FIFO given as a model never hangs a command: opening one for reading would block until a
//! writer appears, so every command refuses it at once with one error line.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_fifo_as_the_model_is_refused_at_once() {
    let fifo = std::env::temp_dir().join(format!("realizar-fifo-{}.gguf", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(made.success());
    let f = fifo.display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["inspect", &f],
        vec!["tokenize", "--model", &f, "--text", "hi"],
        vec!["detokenize", "--model", &f, "--ids", "1"],
        vec!["generate", "--model", &f, "--prompt", "hi"],
        vec!["perplexity", "--model", &f, "--ids-file", &f],
        vec!["embed", "--model", &f, "--text", "hi"],
        vec!["bench", "--model", &f],
        vec!["serve", "--model", &f, "--port", "0"],
    ];
    for args in &commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_realizar"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run realizar");
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&fifo);
                panic!("{args:?} hangs on a FIFO");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = child
            .wait_with_output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        assert!(
            matches!(status.code(), Some(1 | 2)),
            "{args:?}: {status:?} {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_file(&fifo);
}

/// `perplexity` reads its input through a bound: `/dev/zero`, a FIFO and a file over the limit
/// are refused at once (exit 2, one line), never read without end.
#[test]
fn perplexity_inputs_are_bounded() {
    let models = std::env::var_os("REALIZAR_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
        });
    let model = models.join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.exists(),
        "{} missing: run `cargo xtask fetch-models`",
        model.display()
    );
    let dir = std::env::temp_dir().join(format!("realizar-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let fifo = dir.join("fifo.txt");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let big = dir.join("big.txt");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(65 << 20))
        .expect("a sparse 65 MiB file");
    for (flag, input) in [
        ("--file", std::path::PathBuf::from("/dev/zero")),
        ("--ids-file", std::path::PathBuf::from("/dev/zero")),
        ("--file", fifo.clone()),
        ("--file", big.clone()),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_realizar"))
            .args(["perplexity", "--ctx", "64", "--threads", "2", "--model"])
            .arg(&model)
            .arg(flag)
            .arg(&input)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run realizar");
        let t0 = Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = std::fs::remove_dir_all(&dir);
                panic!("perplexity {flag} {} hangs", input.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {}: {err}",
            input.display()
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

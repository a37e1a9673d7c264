//! `realizar embed` on all-MiniLM-L6-v2 against the float64 reference, and its exit codes.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn realizar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realizar"))
        .args(args)
        .output()
        .expect("run realizar")
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn minilm() -> String {
    let dir = std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"))
        .join("minilm-l6");
    assert!(
        dir.exists(),
        "{} not found: run `cargo xtask fetch-models`",
        dir.display()
    );
    dir.display().to_string()
}

fn read_ref(name: &str) -> Value {
    let dir = std::env::var_os("REALIZAR_REFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/refs"));
    let path = dir.join("minilm").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read reference {}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON")
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

#[test]
fn embed_json_matches_the_reference_for_texts_and_ids() {
    let tokens = read_ref("tokens.json");
    let refs = read_ref("embeddings.json");
    let entries = tokens.as_array().expect("tokens.json is an array");
    let want = refs["embeddings"].as_array().expect("embeddings");
    let n = entries.len().min(3);
    assert!(n > 0);
    let model = minilm();

    let mut args = vec!["embed", "--model", &model, "--json"];
    let texts: Vec<&str> = entries[..n]
        .iter()
        .map(|t| t["text"].as_str().expect("text"))
        .collect();
    for t in &texts {
        args.extend(["--text", t]);
    }
    let id_lists: Vec<String> = entries[..n]
        .iter()
        .map(|t| {
            let ids: Vec<String> = t["input_ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|x| x.to_string())
                .collect();
            ids.join(",")
        })
        .collect();
    let mut id_args = vec!["embed", "--model", &model, "--json"];
    for l in &id_lists {
        id_args.extend(["--ids", l]);
    }

    for args in [args, id_args] {
        let out = realizar(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        let got = j["embeddings"].as_array().expect("embeddings array");
        assert_eq!(got.len(), n);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let (g, w) = (floats(g), floats(w));
            assert_eq!(g.len(), 384);
            let cos = cosine(&g, &w);
            assert!(cos >= 0.9999, "text {i}: cosine {cos}");
        }
    }
}

#[test]
fn embed_exit_codes() {
    let model = minilm();
    let code = |args: &[&str]| realizar(args).status.code();
    // A missing model is an I/O failure (1); bad ids and arguments are invalid input (2).
    assert_eq!(
        code(&["embed", "--model", "/nonexistent/model", "--text", "x"]),
        Some(1)
    );
    assert_eq!(
        code(&["embed", "--model", &model, "--ids", "101,4294967295,102"]),
        Some(2)
    );
    assert_eq!(
        code(&["embed", "--model", &model, "--ids", "101,x,102"]),
        Some(2)
    );
    assert_eq!(code(&["embed", "--model", &model]), Some(2));
    let text = realizar(&["embed", "--model", &model, "--text", "hello world"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("dim 384"));
}

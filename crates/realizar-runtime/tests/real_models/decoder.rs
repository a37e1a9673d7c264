//! SmolLM2-135M (llama) and Gemma3-270M against llama.cpp's reference outputs in
//! `refs/llamacpp/` (see refs/README.md): greedy continuations, teacher-forced top-1 agreement,
//! final-position logits, and perplexity. Every prompt the reference files hold is checked.

use std::ops::ControlFlow;
use std::path::Path;

use realizar_runtime::{
    generate, BackendKind, DecoderModel, GenerateConfig, LoadOptions, Logits, SamplerConfig,
};
use serde_json::Value;

use crate::common::{model_path, refs_dir};

/// llama.cpp's own top-2 may be this close at a step where a correct engine picks the other.
const TIE_MARGIN: f64 = 0.1;

fn read_json(name: &str) -> Value {
    let path = refs_dir().join("llamacpp").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read reference {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("invalid JSON in {}: {e}", path.display()))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// `[[id, logit], ...]` pairs.
fn pairs(v: &Value) -> Vec<(u32, f64)> {
    v.as_array()
        .expect("an array of pairs")
        .iter()
        .map(|p| {
            let p = p.as_array().expect("a pair");
            (
                p[0].as_u64().expect("an id") as u32,
                p[1].as_f64().expect("a logit"),
            )
        })
        .collect()
}

fn steps(v: &Value) -> Vec<Vec<(u32, f64)>> {
    v.as_array()
        .expect("an array of steps")
        .iter()
        .map(pairs)
        .collect()
}

/// One reference run: a prompt, llama.cpp's greedy ids, and its top-5 at each greedy step.
struct RefRun {
    label: String,
    prompt: Vec<u32>,
    greedy: Vec<u32>,
    step_top5: Vec<Vec<(u32, f64)>>,
    prompt_top10: Option<Vec<Vec<(u32, f64)>>>,
}

/// Every run of `{model}_refs.json` and `{model}_long_refs.json`.
fn ref_runs(model: &str) -> Vec<RefRun> {
    let refs = read_json(&format!("{model}_refs.json"));
    let mut runs: Vec<RefRun> = refs["prompts"]
        .as_array()
        .expect("`prompts` array")
        .iter()
        .enumerate()
        .map(|(i, p)| RefRun {
            label: format!(
                "{model} prompt {i} {:?}",
                p["prompt"].as_str().unwrap_or("")
            ),
            prompt: ids(&p["prompt_ids"]),
            greedy: ids(&p["greedy_ids"]),
            step_top5: steps(&p["greedy_step_top5"]),
            prompt_top10: p.get("top10_per_prompt_position").map(steps),
        })
        .collect();
    let long = read_json(&format!("{model}_long_refs.json"));
    runs.push(RefRun {
        label: format!("{model} long prompt"),
        prompt: ids(&long["prompt_ids"]),
        greedy: ids(&long["greedy_ids"]),
        step_top5: steps(&long["greedy_step_top5"]),
        prompt_top10: None,
    });
    assert!(runs.len() >= 2, "no reference prompts for {model}");
    runs
}

/// The fetched model behind a reference name (`smollm2`, `gemma3`).
fn model_file(model: &str) -> std::path::PathBuf {
    match model {
        "smollm2" => model_path("smollm2-135m"),
        "gemma3" => model_path("gemma3-270m"),
        other => panic!("no model for reference name {other}"),
    }
}

fn load(model: &str) -> DecoderModel {
    load_on(model, BackendKind::Cpu)
}

fn load_on(model: &str, backend: BackendKind) -> DecoderModel {
    let path = model_file(model);
    DecoderModel::load(
        &path,
        &LoadOptions {
            ctx: Some(1024),
            backend,
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// Cosine similarity and largest absolute difference of two logit vectors.
fn compare_logits(a: &[f32], b: &[f32]) -> (f64, f32) {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let max_abs = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    (dot / (norm(a) * norm(b)), max_abs)
}

/// The scalar single-threaded reference backend runs the whole model and agrees with the fast
/// CPU backend on every reference prompt: the same last-position logits and the same greedy
/// tokens. Both compute llama.cpp's operations in its float order (the reference with the scalar
/// twins, no threads, tiling or batching machinery), so they agree to the bit; a difference is
/// reported with its cosine and largest difference.
fn check_reference_backend(model: &str) {
    let fast = load(model);
    let slow = load_on(model, BackendKind::Reference);
    let (mut fs, mut ss) = (
        fast.session().expect("session"),
        slow.session().expect("session"),
    );
    let runs: Vec<RefRun> = ref_runs(model)
        .into_iter()
        .filter(|r| r.prompt.len() <= 400)
        .collect();
    assert!(runs.len() >= 5, "{model}: the five reference prompts");
    let mut failures = Vec::new();
    for run in &runs {
        let a = fs.eval(&run.prompt, Logits::Last).expect("fast").to_vec();
        let b = ss
            .eval(&run.prompt, Logits::Last)
            .expect("reference")
            .to_vec();
        fs.reset();
        ss.reset();
        let (cos, max_abs) = compare_logits(&a, &b);
        eprintln!(
            "{}: reference vs fast cosine {cos:.7}, max |diff| {max_abs:.6}",
            run.label
        );
        if a != b {
            failures.push(format!(
                "{}: logits cosine {cos}, max |diff| {max_abs}",
                run.label
            ));
        }
        let config = GenerateConfig {
            max_tokens: run.greedy.len(),
            sampler: SamplerConfig::default(),
            stop_on_eog: false,
            grammar: None,
        };
        let go = |s: &mut realizar_runtime::Session<'_>| {
            generate(s, &run.prompt, &config, None, |_, _| {
                ControlFlow::Continue(())
            })
            .unwrap_or_else(|e| panic!("{}: {e}", run.label))
            .ids
        };
        let (ga, gb) = (go(&mut fs), go(&mut ss));
        if ga != gb {
            failures.push(format!(
                "{}: greedy tokens differ\nfast      {ga:?}\nreference {gb:?}",
                run.label
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn smollm2_reference_backend_agrees_with_the_fast_one() {
    check_reference_backend("smollm2");
}

#[test]
fn gemma3_reference_backend_agrees_with_the_fast_one() {
    check_reference_backend("gemma3");
}

/// Greedy 32-token continuations equal llama.cpp's, except after a step where llama.cpp's own
/// top-2 are within [`TIE_MARGIN`] and we picked one of those near-tied tokens.
fn check_greedy(model: &str) {
    let m = load(model);
    let mut session = m.session().expect("session");
    // Every prompt is run and reported before the test fails on the first bad one.
    let mut failures = Vec::new();
    for run in ref_runs(model) {
        let config = GenerateConfig {
            max_tokens: run.greedy.len(),
            sampler: SamplerConfig::default(),
            stop_on_eog: false,
            grammar: None,
        };
        let g = generate(&mut session, &run.prompt, &config, None, |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap_or_else(|e| panic!("{}: {e}", run.label));
        assert_eq!(g.ids.len(), run.greedy.len(), "{}", run.label);
        if let Some(i) = g.ids.iter().zip(&run.greedy).position(|(a, b)| a != b) {
            let top = &run.step_top5[i];
            let ours = top.iter().find(|(id, _)| *id == g.ids[i]);
            let margin = ours.map(|(_, l)| top[0].1 - l);
            if !margin.is_some_and(|mg| mg < TIE_MARGIN) {
                let msg = format!(
                    "{}: diverged at step {i}: ours {:?}, llama.cpp {:?} (top-5 {top:?})\nours   {:?}\nllama  {:?}",
                    run.label, g.ids[i], run.greedy[i], g.ids, run.greedy
                );
                eprintln!("{msg}");
                failures.push(msg);
                continue;
            }
            eprintln!(
                "{}: accepted divergence at step {i} (llama.cpp margin {:.4})",
                run.label,
                margin.unwrap_or(0.0)
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Teacher-forced top-1 agreement over every prompt position with a reference top-10 and every
/// greedy step (feeding llama.cpp's own greedy ids).
fn check_teacher_forced(model: &str) {
    let m = load(model);
    let mut session = m.session().expect("session");
    let n_vocab = m.n_vocab();
    let (mut agree, mut total) = (0usize, 0usize);
    for run in ref_runs(model) {
        let n = run.prompt.len();
        // As llama.cpp made the references: the whole prompt in one pass (logits at every
        // position where the reference has them), then llama.cpp's greedy ids one at a time.
        session.reset();
        let want = if run.prompt_top10.is_some() {
            Logits::All
        } else {
            Logits::Last
        };
        let logits = session
            .eval(&run.prompt, want)
            .expect("prompt pass")
            .to_vec();
        if let Some(top10) = &run.prompt_top10 {
            // The last prompt position is also greedy step 0, counted below.
            for (j, row) in logits.chunks_exact(n_vocab).enumerate().take(n - 1) {
                total += 1;
                agree += usize::from(realizar_runtime::sampling::argmax(row) == top10[j][0].0);
            }
        }
        let mut last = logits[logits.len() - n_vocab..].to_vec();
        for (step, top5) in run.step_top5.iter().enumerate() {
            if step > 0 {
                let fed = run.greedy[step - 1];
                last = session
                    .eval(&[fed], Logits::Last)
                    .expect("decode step")
                    .to_vec();
            }
            total += 1;
            let ours = realizar_runtime::sampling::argmax(&last);
            if ours == top5[0].0 {
                agree += 1;
            } else {
                eprintln!(
                    "{}: step {step}: ours {ours}, llama.cpp top-5 {top5:?}",
                    run.label
                );
            }
        }
    }
    let rate = agree as f64 / total as f64;
    eprintln!("{model}: teacher-forced top-1 agreement {agree}/{total} = {rate:.4}");
    assert!(rate >= 0.99, "{model}: top-1 agreement {agree}/{total}");
}

/// Reads a little-endian f32 `.npy` vector.
fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x93NUMPY"),
        "{}: not .npy",
        path.display()
    );
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => panic!("{}: .npy version {v}", path.display()),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ASCII header");
    assert!(
        header.contains("'descr': '<f4'"),
        "not little-endian f32: {header}"
    );
    assert!(header.contains("'fortran_order': False"), "{header}");
    bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The first prompt's final-position logits: cosine ≥ 0.999 with llama.cpp's, same top-10 ids.
fn check_last_logits(model: &str) {
    let refs = read_json(&format!("{model}_refs.json"));
    let p0 = &refs["prompts"][0];
    let expected = read_npy_f32(
        &refs_dir()
            .join("llamacpp")
            .join(format!("{model}_p0_last_logits.npy")),
    );
    let m = load(model);
    assert_eq!(expected.len(), m.n_vocab());
    let mut session = m.session().expect("session");
    let ours = session
        .eval(&ids(&p0["prompt_ids"]), Logits::Last)
        .expect("prompt pass")
        .to_vec();
    let dot: f64 = ours
        .iter()
        .zip(&expected)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    let na: f64 = ours
        .iter()
        .map(|&a| f64::from(a).powi(2))
        .sum::<f64>()
        .sqrt();
    let nb: f64 = expected
        .iter()
        .map(|&b| f64::from(b).powi(2))
        .sum::<f64>()
        .sqrt();
    let cos = dot / (na * nb);
    let max_abs = ours
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("{model}: last-position logits cosine {cos:.6}, max |diff| {max_abs:.4}");
    assert!(cos >= 0.999, "{model}: cosine {cos}");
    let mut want: Vec<u32> = pairs(&p0["last_prompt_pos_top10"])
        .iter()
        .map(|p| p.0)
        .collect();
    let mut got: Vec<u32> = realizar_runtime::generate::top_n(&ours, want.len())
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(got[0], want[0], "{model}: top-1 differs");
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "{model}: top-10 ids differ");
}

#[test]
fn smollm2_greedy_matches_llama_cpp() {
    check_greedy("smollm2");
}

#[test]
fn gemma3_greedy_matches_llama_cpp() {
    check_greedy("gemma3");
}

#[test]
fn smollm2_teacher_forced_top1_agrees_with_llama_cpp() {
    check_teacher_forced("smollm2");
}

#[test]
fn gemma3_teacher_forced_top1_agrees_with_llama_cpp() {
    check_teacher_forced("gemma3");
}

#[test]
fn smollm2_last_logits_match_llama_cpp() {
    check_last_logits("smollm2");
}

#[test]
fn gemma3_last_logits_match_llama_cpp() {
    check_last_logits("gemma3");
}

/// Perplexity on `ppl_bridges.txt` at ctx 128, within 1% of llama-perplexity's (flash
/// attention off), with the text tokenized by the GGUF's own tokenizer.
fn check_perplexity(model: &str) {
    let results = read_json("perplexity_results.json");
    let expected = results["results"][format!("{model}_fa_off")]["ppl"]
        .as_f64()
        .expect("reference perplexity");
    let expected_chunks = results["results"][format!("{model}_fa_off")]["n_chunks"].as_u64();
    let text = std::fs::read_to_string(refs_dir().join("llamacpp").join("ppl_bridges.txt"))
        .expect("ppl_bridges.txt");
    let m = load(model);
    let tok = m
        .with_gguf(realizar_runtime::tokenizer_load::tokenizer_from_gguf)
        .expect("parse")
        .expect("tokenizer");
    let tokens = tok
        .encode(&text, realizar_tokenize::EncodeOptions::default())
        .expect("tokenize");
    let special = m.special();
    let bos = if special.add_bos { special.bos } else { None };
    let mut session = m.session_with_ctx(128).expect("session");
    let p = realizar_runtime::perplexity(&mut session, &tokens, 128, bos).expect("perplexity");
    eprintln!(
        "{model}: perplexity {:.4} (llama.cpp {expected}), {} chunks, {} tokens scored",
        p.ppl, p.chunks, p.tokens_scored
    );
    if let Some(c) = expected_chunks {
        assert_eq!(p.chunks as u64, c, "{model}: chunk count");
    }
    assert_eq!(p.tokens_scored, p.chunks * 63);
    assert!(
        (p.ppl / expected - 1.0).abs() <= 0.01,
        "{model}: perplexity {} vs llama.cpp {expected}",
        p.ppl
    );
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    check_perplexity("smollm2");
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3");
}

/// End-of-generation ids derived from the vocabulary the way llama.cpp does (EOS, EOT and the
/// end-of-turn / FIM-repo texts): SmolLM2 {0, 2, 4} per refs/README.md.
#[test]
fn end_of_generation_ids_follow_llama_cpp() {
    let refs = read_json("smollm2_refs.json");
    let m = load("smollm2");
    assert_eq!(m.special().eog, vec![0, 2, 4]);
    assert!(!m.special().add_bos);
    assert_eq!(m.special().eos, refs["eos_id"].as_u64().map(|x| x as u32));
    let refs = read_json("gemma3_refs.json");
    let g = load("gemma3");
    let s = g.special();
    assert!(s.add_bos);
    assert_eq!(s.bos, refs["bos_id"].as_u64().map(|x| x as u32));
    for key in ["eos_id", "eot_id"] {
        if let Some(id) = refs[key].as_u64() {
            assert!(
                s.is_eog(id as u32),
                "gemma3 {key} {id} is not end-of-generation"
            );
        }
    }
}

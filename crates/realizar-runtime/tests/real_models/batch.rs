//! The multi-sequence batch decoder on SmolLM2-135M: its logits are bit-identical to a plain
//! session's, whatever else is in the batch and however the prompt is chunked, and its greedy
//! continuations equal the reference ones of llama.cpp.

use realizar_runtime::batch::{BatchDecoder, BatchForward, BatchOptions, SeqChunk};
use realizar_runtime::sampling::argmax;
use realizar_runtime::{DecoderModel, LoadOptions, Logits, RuntimeError};
use serde_json::Value;

use crate::common::{model_path, refs_dir};

/// llama.cpp's top-2 logits closer than this may legitimately come out in the other order.
const TIE_MARGIN: f64 = 0.1;

fn smollm2() -> DecoderModel {
    DecoderModel::load(
        model_path("smollm2-135m"),
        &LoadOptions {
            ctx: Some(512),
            ..LoadOptions::default()
        },
    )
    .expect("load SmolLM2")
}

/// The reference prompts: ids, llama.cpp's greedy ids, and the smallest top-1/top-2 logit
/// margin over its greedy steps (where it is tiny, a correct engine may pick the other token).
fn ref_prompts() -> Vec<(Vec<u32>, Vec<u32>, f64)> {
    let path = refs_dir().join("llamacpp/smollm2_refs.json");
    let text = std::fs::read_to_string(&path).expect("smollm2_refs.json");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect()
    };
    v["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| {
            let margin = p["greedy_step_min_top1_top2_margin"]
                .as_f64()
                .expect("margin");
            (ids(&p["prompt_ids"]), ids(&p["greedy_ids"]), margin)
        })
        .collect()
}

/// Greedy continuation with a plain session, and the logits after the prompt and each token.
fn session_greedy(model: &DecoderModel, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut s = model.session().expect("session");
    let mut logits = vec![s.eval(prompt, Logits::Last).expect("prefill").to_vec()];
    let mut out = Vec::new();
    for _ in 0..n {
        let id = argmax(logits.last().expect("logits"));
        out.push(id);
        logits.push(s.eval(&[id], Logits::Last).expect("decode").to_vec());
    }
    (out, logits)
}

#[test]
fn batched_sequences_match_sessions_bit_for_bit_and_llama_cpp() {
    let model = smollm2();
    let refs = ref_prompts();
    let prompts: Vec<Vec<u32>> = refs.iter().take(4).map(|r| r.0.clone()).collect();
    let steps = 12;
    let alone: Vec<(Vec<u32>, Vec<Vec<f32>>)> = prompts
        .iter()
        .map(|p| session_greedy(&model, p, steps))
        .collect();
    // Where llama.cpp's own top-2 are clearly apart, the continuation must be its.
    for ((ids, _), (_, want, margin)) in alone.iter().zip(&refs) {
        if *margin > TIE_MARGIN {
            assert_eq!(ids[..], want[..steps], "session greedy vs llama.cpp");
        }
    }
    assert!(refs.iter().take(4).any(|r| r.2 > TIE_MARGIN));

    // All four in one batch decoder: prompts fed in chunks of 3 tokens side by side, then
    // decoded together, one row each per step.
    let mut bd = BatchDecoder::new(
        &model,
        BatchOptions {
            slots: 4,
            ctx: Some(512),
            max_rows: 16,
            ..BatchOptions::default()
        },
    )
    .expect("batch decoder");
    let mut fed = [0usize; 4];
    let mut last: Vec<Option<Vec<f32>>> = vec![None; 4];
    while fed.iter().zip(&prompts).any(|(f, p)| *f < p.len()) {
        let chunks: Vec<SeqChunk<'_>> = (0..4)
            .filter(|&i| fed[i] < prompts[i].len())
            .map(|i| {
                let end = (fed[i] + 3).min(prompts[i].len());
                SeqChunk {
                    slot: i,
                    tokens: &prompts[i][fed[i]..end],
                    logits: end == prompts[i].len(),
                }
            })
            .collect();
        let wants: Vec<usize> = chunks.iter().filter(|c| c.logits).map(|c| c.slot).collect();
        let advance: Vec<(usize, usize)> =
            chunks.iter().map(|c| (c.slot, c.tokens.len())).collect();
        let out = bd.forward(&chunks).expect("forward").to_vec();
        for (slot, n) in advance {
            fed[slot] += n;
        }
        for (row, slot) in out.chunks_exact(bd.n_vocab()).zip(wants) {
            last[slot] = Some(row.to_vec());
        }
    }
    let mut generated = vec![Vec::new(); 4];
    for step in 0..=steps {
        for i in 0..4 {
            let got = last[i].as_ref().expect("logits");
            let want = &alone[i].1[step];
            assert!(
                got.iter()
                    .zip(want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "sequence {i} step {step}: batched logits differ from the session's"
            );
        }
        if step == steps {
            break;
        }
        let next: Vec<[u32; 1]> = (0..4)
            .map(|i| [argmax(last[i].as_ref().expect("logits"))])
            .collect();
        for (g, n) in generated.iter_mut().zip(&next) {
            g.push(n[0]);
        }
        let chunks: Vec<SeqChunk<'_>> = next
            .iter()
            .enumerate()
            .map(|(i, t)| SeqChunk {
                slot: i,
                tokens: t,
                logits: true,
            })
            .collect();
        let out = bd.forward(&chunks).expect("decode step").to_vec();
        for (i, row) in out.chunks_exact(bd.n_vocab()).enumerate() {
            last[i] = Some(row.to_vec());
        }
    }
    for (i, g) in generated.iter().enumerate() {
        assert_eq!(g, &alone[i].0, "sequence {i}");
    }
}

#[test]
fn batch_decoder_rejects_bad_batches_without_touching_the_caches() {
    let model = smollm2();
    let mut bd = BatchDecoder::new(
        &model,
        BatchOptions {
            slots: 2,
            ctx: Some(16),
            max_rows: 8,
            ..BatchOptions::default()
        },
    )
    .expect("batch decoder");
    let ok = [1u32, 2, 3];
    let chunk = |slot, tokens| SeqChunk {
        slot,
        tokens,
        logits: true,
    };
    assert!(matches!(
        bd.forward(&[]),
        Err(RuntimeError::InvalidArgument { .. })
    ));
    assert!(bd.forward(&[chunk(5, &ok[..])]).is_err(), "no slot 5");
    assert!(bd.forward(&[chunk(0, &[][..])]).is_err(), "empty chunk");
    assert!(
        bd.forward(&[chunk(0, &ok[..]), chunk(0, &ok[..])]).is_err(),
        "slot twice"
    );
    assert!(
        bd.forward(&[chunk(0, &[1, 49152][..])]).is_err(),
        "id outside the vocabulary"
    );
    assert!(
        bd.forward(&[chunk(0, &[7; 9][..])]).is_err(),
        "more rows than allowed"
    );
    assert_eq!(bd.slot_len(0), 0, "a rejected batch appended nothing");
    for _ in 0..5 {
        bd.forward(&[chunk(0, &ok[..])]).expect("fits");
    }
    assert!(matches!(
        bd.forward(&[chunk(0, &ok[..])]),
        Err(RuntimeError::PromptTooLong {
            tokens: 18,
            ctx: 16
        })
    ));
    assert_eq!(bd.slot_len(0), 15);
    bd.clear_slot(0);
    assert_eq!(bd.slot_len(0), 0);
    assert!(BatchDecoder::new(
        &model,
        BatchOptions {
            slots: 0,
            ..BatchOptions::default()
        }
    )
    .is_err());
}

/// A slot cut back to a prefix and resumed gives a fresh evaluation's logits, bit for bit,
/// when every pass over the prompt holds two or more of its rows (a one-row pass sums
/// attention in llama.cpp's single-query order, and the f16 roundings carry the difference on:
/// up to 0.7 in a logit on this prompt). The server splits prompts this way and reuses cached
/// prefixes on it.
#[test]
fn a_truncated_slot_resumes_exactly() {
    let model = smollm2();
    let refs = ref_prompts();
    let prompt = &refs[4].0; // the long one
    let mut bd = BatchDecoder::new(
        &model,
        BatchOptions {
            slots: 2,
            ctx: Some(512),
            max_rows: 80,
            ..BatchOptions::default()
        },
    )
    .expect("batch decoder");
    // Chunks of at most 64 rows, never a last chunk of one row (as the server splits prompts).
    let eval = |bd: &mut BatchDecoder, slot: usize, toks: &[u32]| -> Vec<f32> {
        let mut last = Vec::new();
        let mut at = 0;
        while at < toks.len() {
            let rest = toks.len() - at;
            let mut n = rest.min(64);
            if rest - n == 1 && n >= 3 {
                n -= 1;
            }
            let want = at + n == toks.len();
            let out = bd
                .forward(&[SeqChunk {
                    slot,
                    tokens: &toks[at..at + n],
                    logits: want,
                }])
                .expect("forward");
            if want {
                last = out.to_vec();
            }
            at += n;
        }
        last
    };
    let fresh = eval(&mut bd, 1, prompt);
    // Slot 0: the prompt plus some other tokens, then cut back to a prefix and resumed.
    let _ = eval(&mut bd, 0, prompt);
    let _ = eval(&mut bd, 0, &[42, 43, 44]);
    for keep in [prompt.len() - 2, 200, 129, 1] {
        bd.truncate_slot(0, keep);
        assert_eq!(bd.slot_len(0), keep);
        let got = eval(&mut bd, 0, &prompt[keep..]);
        assert!(
            got.iter()
                .zip(&fresh)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "resuming after {keep} positions differs"
        );
        let _ = eval(&mut bd, 0, &[7, 8]);
    }
}

/// `Decoder::forward_segments` checks its own arguments (it is public beside `BatchDecoder`):
/// every bad call is an error and appends nothing to any cache.
#[test]
fn forward_segments_rejects_bad_passes_without_touching_the_caches() {
    use realizar_nn::Segment;
    let model = smollm2();
    let dec = model.decoder();
    let mut caches = vec![
        dec.new_cache(realizar_nn::KvType::F16, 8).expect("cache"),
        dec.new_cache(realizar_nn::KvType::F16, 8).expect("cache"),
    ];
    let mut scratch = dec.new_scratch(4);
    let seg = |cache, rows| Segment { cache, rows };
    let ok = [1u32, 2, 3];
    /// Tokens, segments, logit rows, what is wrong.
    type Case<'a> = (&'a [u32], Vec<Segment>, Vec<usize>, &'a str);
    let bad: [Case; 8] = [
        (&ok, vec![seg(0, 2)], vec![], "rows do not add up"),
        (
            &ok,
            vec![seg(0, 3), seg(1, 0)],
            vec![],
            "a segment without rows",
        ),
        (&ok, vec![seg(0, 1), seg(0, 2)], vec![], "a cache twice"),
        (&ok, vec![seg(2, 3)], vec![], "no cache 2"),
        (&ok, vec![seg(0, 3)], vec![3], "logit row out of range"),
        (
            &[1, 49152, 3],
            vec![seg(0, 3)],
            vec![2],
            "token outside the vocabulary",
        ),
        (
            &[5; 5],
            vec![seg(0, 5)],
            vec![],
            "more rows than the scratch",
        ),
        (&[], vec![], vec![], "no tokens"),
    ];
    for (tokens, segs, rows, what) in bad {
        let r = dec.forward_segments(tokens, &mut caches, &segs, &rows, &mut scratch);
        assert!(r.is_err(), "{what}");
        assert!(
            caches.iter().all(|c| c.is_empty()),
            "{what}: a cache was touched"
        );
    }
    for _ in 0..2 {
        let logits = dec
            .forward_segments(&ok, &mut caches, &[seg(1, 3)], &[2], &mut scratch)
            .expect("fits")
            .len();
        assert_eq!(logits, dec.config().n_vocab);
    }
    assert!(
        dec.forward_segments(&ok, &mut caches, &[seg(1, 3)], &[], &mut scratch)
            .is_err(),
        "no room left in cache 1"
    );
    assert_eq!((caches[0].len(), caches[1].len()), (0, 6));
}

/// The runtime's `Batcher`, driven from Rust with no HTTP: several conversations submitted
/// together (more than its slots, so some wait) each stream the text and tokens that
/// `generate` gives alone, stop strings included, and a dropped handle cancels its sequence.
#[test]
fn batcher_streams_what_generate_gives_alone() {
    use realizar_runtime::batcher::{BatcherConfig, FinishReason, GenEvent, GenRequest};
    use realizar_runtime::{generate, ChatMessage, GenerateConfig, Model, SamplerConfig};
    use std::ops::ControlFlow;

    let model = Model::open(
        model_path("smollm2-135m"),
        &LoadOptions {
            ctx: Some(512),
            ..LoadOptions::default()
        },
    )
    .expect("open SmolLM2");
    let questions = [
        ("What is the capital of France?", vec![]),
        ("Name three colours.", vec![",".to_string()]),
        ("Why is the sea salty?", vec![]),
        ("Count from one to five.", vec!["three".to_string()]),
        ("Write a haiku about rain.", vec![]),
    ];
    let batcher = model.batcher(2, BatcherConfig::default()).expect("batcher");
    // One request whose handle is dropped at once: its slot must come back.
    let prompt = |q: &str| {
        model
            .chat_prompt(&[ChatMessage::new("user", q)])
            .expect("chat prompt")
    };
    let request = |q: &str, stop: Vec<String>| GenRequest {
        prompt: prompt(q),
        max_tokens: 24,
        sampler: SamplerConfig::default(),
        stop,
        logprobs: None,
        ignore_eos: false,
        grammar: None,
        keep_special: Vec::new(),
    };
    drop(
        batcher
            .submit(request("Tell me a long story.", vec![]))
            .expect("submit"),
    );
    let handles: Vec<_> = questions
        .iter()
        .map(|(q, stop)| batcher.submit(request(q, stop.clone())).expect("submit"))
        .collect();
    let decoder = model.decoder().expect("decoder");
    for ((q, stop), handle) in questions.iter().zip(handles) {
        let (mut text, mut tokens, mut done) = (String::new(), 0usize, None);
        for ev in handle {
            match ev {
                GenEvent::Delta { text: t, token, .. } => {
                    text.push_str(&t);
                    tokens += usize::from(token.is_some());
                }
                GenEvent::Done(s) => done = Some(s),
                GenEvent::Failed(m) => panic!("{q}: {m}"),
            }
        }
        let done = done.expect("a summary");
        let mut session = decoder.session().expect("session");
        let mut stream = model.text_stream(stop.clone()).expect("text stream");
        let config = GenerateConfig {
            max_tokens: 24,
            sampler: SamplerConfig::default(),
            stop_on_eog: true,
            grammar: None,
        };
        let alone = generate(
            &mut session,
            &prompt(q),
            &config,
            Some(&mut stream),
            |_, _| ControlFlow::Continue(()),
        )
        .expect("generate");
        assert_eq!(text, alone.text, "{q}");
        assert_eq!(tokens, alone.ids.len(), "{q}");
        assert_eq!(done.completion_tokens, alone.ids.len(), "{q}");
        let want = match alone.stop_reason.as_str() {
            "length" => FinishReason::Length,
            _ => FinishReason::Stop,
        };
        assert_eq!(done.finish_reason, want, "{q}");
    }
    // Every slot is free again once the worker has accounted for the last step.
    let t0 = std::time::Instant::now();
    while batcher.load().active != 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "sequences left active: {:?}",
            batcher.load()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

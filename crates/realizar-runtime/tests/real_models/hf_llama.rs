//! A Hugging Face llama directory (config.json, tokenizer.json, tokenizer_config.json,
//! generation_config.json and two F16 safetensors shards with their index), written from the
//! F16 SmolLM2 test model the way Hugging Face lays the same weights out: tensor names and
//! shapes of transformers' `LlamaForCausalLM`, the query/key rows of each head in halves
//! (transformers' `rotate_half`) rather than llama.cpp's adjacent pairs, the byte-level BPE
//! vocabulary as `tokenizers` writes it. Run directly, it must give llama.cpp's tokens on the
//! GGUF file it was written from (`tests/refs/transplant/f16.json`).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use realizar_format_gguf::{GgmlType, GgufFile};
use realizar_format_safetensors::{Dtype, SafetensorsWriter};
use realizar_runtime::{generate, GenerateConfig, LoadOptions, Model, SamplerConfig};
use serde_json::{json, Value as Json};

use crate::common::workspace_root;
use crate::transplant::transplanted;

/// The version of the directory layout written here (bump to rewrite existing directories).
const VERSION: u32 = 1;

/// transformers' name of a llama.cpp llama tensor.
fn hf_name(gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.").expect("a block tensor");
    let (n, part) = rest.split_once('.').expect("blk.N.name");
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        other => panic!("no transformers name for {other}"),
    };
    format!("model.layers.{n}.{hf}")
}

/// The rows of each head from llama.cpp's adjacent-pair order back to transformers' halves:
/// row `2j + a` of a head moves to row `a·(hd/2) + j` (the inverse of the converter's
/// `permute`).
fn unpermute(data: &[u8], rows: usize, n_head: usize) -> Vec<u8> {
    let rb = data.len() / rows;
    let hd = rows / n_head;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for j in 0..hd / 2 {
            for a in 0..2 {
                let src = h * hd + 2 * j + a;
                let dst = h * hd + a * (hd / 2) + j;
                out[dst * rb..(dst + 1) * rb].copy_from_slice(&data[src * rb..(src + 1) * rb]);
            }
        }
    }
    out
}

fn strings(f: &GgufFile<'_>, key: &str) -> Vec<String> {
    f.get_strings(key)
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .map(str::to_string)
        .collect()
}

/// Writes the directory for the GGUF model at `src` into `dir`.
fn write_dir(src: &Path, dir: &Path) {
    let bytes = std::fs::read(src).expect("read the GGUF model");
    let f = GgufFile::parse(&bytes).expect("parse");
    let u = |k: &str| f.get_u32(&format!("llama.{k}")).expect(k) as usize;
    let (n_head, n_head_kv, n_layer) = (
        u("attention.head_count"),
        u("attention.head_count_kv"),
        u("block_count"),
    );
    assert_eq!(f.get_str("tokenizer.ggml.pre").ok(), Some("smollm"));
    assert!(f.tensor("output.weight").is_none(), "a tied model");

    // Weights: two shards, the second from the middle block on.
    let mut shards = [SafetensorsWriter::new(), SafetensorsWriter::new()];
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let mut weight_map = BTreeMap::new();
    let mut total = 0usize;
    for t in f.tensors() {
        let data = f.tensor_data(t.name).expect("tensor data");
        let dtype = match t.ty {
            GgmlType::F16 => Dtype::F16,
            GgmlType::F32 => Dtype::F32,
            GgmlType::BF16 => Dtype::BF16,
            other => panic!("{}: {other:?} has no safetensors type", t.name),
        };
        let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        let data = if t.name.ends_with("attn_q.weight") {
            unpermute(data, shape[0], n_head)
        } else if t.name.ends_with("attn_k.weight") {
            unpermute(data, shape[0], n_head_kv)
        } else {
            data.to_vec()
        };
        let shard = match t.name.strip_prefix("blk.") {
            Some(rest)
                if rest.split('.').next().unwrap().parse::<usize>().unwrap() >= n_layer / 2 =>
            {
                1
            }
            _ => 0,
        };
        let name = hf_name(t.name);
        total += data.len();
        shards[shard]
            .add_tensor(&name, dtype, &shape, &data)
            .expect("add tensor");
        weight_map.insert(name, names[shard]);
    }
    for (w, name) in shards.iter().zip(names) {
        w.write_to(std::fs::File::create(dir.join(name)).expect("create shard"))
            .expect("write shard");
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();

    let eps = f.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap() as f64;
    let theta = f.get_f32("llama.rope.freq_base").unwrap() as f64;
    let id = |k: &str| f.get_u32(&format!("tokenizer.ggml.{k}_token_id")).unwrap();
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": u("embedding_length"),
        "intermediate_size": u("feed_forward_length"),
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "max_position_embeddings": u("context_length"),
        "rms_norm_eps": eps,
        "rope_theta": theta,
        "rope_scaling": null,
        "tie_word_embeddings": true,
        "vocab_size": u("vocab_size"),
        "hidden_act": "silu",
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "torch_dtype": "float16",
        "use_cache": true,
        "bos_token_id": id("bos"),
        "eos_token_id": id("eos"),
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();

    // The vocabulary as `tokenizers` writes a byte-level BPE model: control tokens are added
    // special tokens, the pre-tokenizer is SmolLM's (digits split, then GPT-2 byte level).
    let tokens = strings(&f, "tokenizer.ggml.tokens");
    let types: Vec<i32> = f
        .get_array("tokenizer.ggml.token_type")
        .ok()
        .and_then(|a| a.i32s().map(Iterator::collect))
        .expect("token types");
    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Json> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty == 3 || ty == 4)
        .map(|(i, (t, &ty))| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": ty == 4, "special": ty == 3})
        })
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": true, "use_regex": true});
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": strings(&f, "tokenizer.ggml.merges")},
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let text = |i: u32| tokens[i as usize].clone();
    let tokenizer_config = json!({
        "add_bos_token": f.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(false),
        "bos_token": text(id("bos")),
        "eos_token": text(id("eos")),
        "unk_token": text(id("unknown")),
        "pad_token": text(id("padding")),
        "model_max_length": u("context_length"),
        "tokenizer_class": "GPT2Tokenizer",
        "chat_template": f.get_str("tokenizer.chat_template").unwrap(),
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&tokenizer_config).unwrap(),
    )
    .unwrap();
    let generation = json!({"bos_token_id": id("bos"), "eos_token_id": id("eos")});
    std::fs::write(dir.join("generation_config.json"), generation.to_string()).unwrap();
}

/// The directory written from the transplant `kind` (a llama-layout F16 or BF16 file), under
/// `target/transplant/`, written first if missing (into a temporary directory renamed into
/// place, so that a reader sees all of it or none).
pub fn hf_dir(kind: &str) -> PathBuf {
    let root = workspace_root().join("target/transplant");
    let dir = root.join(format!("smollm2-{kind}-hf-v{VERSION}"));
    if dir.join("config.json").exists() {
        return dir;
    }
    let tmp = root.join(format!("smollm2-{kind}-hf.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("create the directory");
    write_dir(&transplanted(kind), &tmp);
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another test wrote it first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

/// The directory written from the transplant `kind`, opened with a context of `ctx`, and its
/// tokenizer.
fn open_dir(kind: &str, ctx: usize) -> (Model, std::sync::Arc<realizar_tokenize::Tokenizer>) {
    let dir = hf_dir(kind);
    let model = Model::open(
        &dir,
        &LoadOptions {
            ctx: Some(ctx),
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("cannot open {}: {e}", dir.display()));
    let tok = model.tokenizer().expect("tokenizer.json").clone();
    (model, tok)
}

/// The directory runs as the GGUF file it was written from runs in llama.cpp: the same
/// prompt ids (its tokenizer.json), greedy continuations and teacher-forced top-1
/// (`check_model` of the families' tests), and perplexity within 0.1%.
#[test]
fn hf_llama_directory_matches_llama_cpp() {
    let (model, tok) = open_dir("f16", 1024);
    let decoder = model.require_decoder().expect("a decoder");
    crate::families::check_model("f16 (Hugging Face directory)", "f16", decoder, &tok);
}

/// The same with BF16 shards (the BF16 test model's weights).
#[test]
fn hf_llama_bf16_directory_matches_llama_cpp() {
    let (model, tok) = open_dir("bf16", 1024);
    let decoder = model.require_decoder().expect("a decoder");
    crate::families::check_model("bf16 (Hugging Face directory)", "bf16", decoder, &tok);
}

#[test]
fn hf_llama_directory_perplexity_matches_llama_cpp() {
    let (model, tok) = open_dir("f16", 128);
    crate::families::check_model_perplexity("f16", model.require_decoder().unwrap(), &tok);
}

/// The directory's chat template and end-of-generation tokens: a chat renders with the
/// template of tokenizer_config.json and the reply stops at `<|im_end|>`
/// (generation_config.json's eos), as the GGUF file's does.
#[test]
fn hf_llama_directory_chats_like_its_gguf_file() {
    let opts = LoadOptions {
        ctx: Some(512),
        ..LoadOptions::default()
    };
    let dir = Model::open(hf_dir("f16"), &opts).expect("open the directory");
    let gguf = Model::open(transplanted("f16"), &opts).expect("open the GGUF file");
    let messages = [realizar_runtime::ChatMessage::new(
        "user",
        "What is the capital of France?",
    )];
    let reply = |m: &Model| {
        let prompt = m.chat_prompt(&messages).expect("render");
        let d = m.require_decoder().unwrap();
        let mut s = d.session().unwrap();
        let g = generate(
            &mut s,
            &prompt,
            &GenerateConfig {
                max_tokens: 48,
                sampler: SamplerConfig::default(),
                stop_on_eog: true,
                grammar: None,
            },
            None,
            |_, _| ControlFlow::Continue(()),
        )
        .expect("generate");
        (prompt, g.ids, d.special().clone())
    };
    let (a, b) = (reply(&dir), reply(&gguf));
    assert_eq!(a.0, b.0, "the same prompt ids");
    assert_eq!(a.1, b.1, "the same reply");
    assert_eq!(a.2, b.2, "the same special tokens");
    assert!(
        a.1.last().is_some_and(|&t| a.2.is_eog(t)) || a.1.len() == 48,
        "{:?}",
        a.1
    );
}

/// Broken directories exit with one line naming the field or tensor at fault.
#[test]
fn broken_hf_llama_directories_name_what_is_wrong() {
    let good = hf_dir("f16");
    let root = workspace_root().join("target/transplant");
    let case = |label: &str, edit: &dyn Fn(&Path), expect: &str| {
        let dir = root.join(format!("hf-broken-{label}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&good).unwrap() {
            let e = e.unwrap();
            // Shards are linked, not copied (the edits below rewrite the JSON files only,
            // or replace a shard with a new file).
            std::fs::hard_link(e.path(), dir.join(e.file_name()))
                .or_else(|_| std::fs::copy(e.path(), dir.join(e.file_name())).map(|_| ()))
                .unwrap();
        }
        edit(&dir);
        let err = Model::open(&dir, &LoadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{label}: loaded"))
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("{label}: {err}");
        assert!(err.contains(expect), "{label}: {err}");
        assert!(!err.contains('\n'), "{label}: one line: {err}");
    };
    fn edit_config(f: impl Fn(&mut serde_json::Map<String, Json>)) -> impl Fn(&Path) {
        move |dir: &Path| {
            let p = dir.join("config.json");
            let mut v: Json = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            f(v.as_object_mut().unwrap());
            std::fs::remove_file(&p).unwrap();
            std::fs::write(&p, v.to_string()).unwrap();
        }
    }
    case(
        "layers",
        &edit_config(|c| {
            c.remove("num_hidden_layers");
        }),
        "num_hidden_layers",
    );
    case(
        "heads",
        &edit_config(|c| {
            c.insert("num_key_value_heads".into(), json!(5));
        }),
        "num_key_value_heads",
    );
    case(
        "act",
        &edit_config(|c| {
            c.insert("hidden_act".into(), json!("gelu"));
        }),
        "hidden_act",
    );
    case(
        "bias",
        &edit_config(|c| {
            c.insert("attention_bias".into(), json!(true));
        }),
        "attention_bias",
    );
    case(
        "rope",
        &edit_config(|c| {
            c.insert(
                "rope_scaling".into(),
                json!({"rope_type": "dynamic", "factor": 2.0}),
            );
        }),
        "dynamic",
    );
    case(
        "window",
        &edit_config(|c| {
            c.insert("sliding_window".into(), json!(4096));
        }),
        "sliding_window",
    );
    case(
        "untied",
        &edit_config(|c| {
            c.insert("tie_word_embeddings".into(), json!(false));
        }),
        "lm_head.weight",
    );
    // A shard whose tensor has the wrong type, and one with a tensor llama has no place for.
    let rewrite_shard = |extra: bool| {
        move |dir: &Path| {
            let name = "model-00001-of-00002.safetensors";
            let p = dir.join(name);
            let bytes = std::fs::read(&p).unwrap();
            let st = realizar_format_safetensors::SafeTensors::parse(&bytes).unwrap();
            let mut w = SafetensorsWriter::new();
            for (n, v) in st.tensors() {
                if !extra && n == "model.norm.weight" {
                    let as_f64: Vec<u8> = v
                        .to_f32_vec()
                        .unwrap()
                        .iter()
                        .flat_map(|x| (*x as f64).to_le_bytes())
                        .collect();
                    w.add_tensor(n, Dtype::F64, &v.shape, &as_f64).unwrap();
                } else {
                    w.add_tensor(n, v.dtype, &v.shape, v.data).unwrap();
                }
            }
            if extra {
                w.add_tensor(
                    "model.layers.0.self_attn.q_proj.bias",
                    Dtype::F32,
                    &[576],
                    &[0; 2304],
                )
                .unwrap();
            }
            std::fs::remove_file(&p).unwrap();
            w.write_to(std::fs::File::create(&p).unwrap()).unwrap();
        }
    };
    case("dtype", &rewrite_shard(false), "model.norm.weight");
    case("extra", &rewrite_shard(true), "q_proj.bias");
}

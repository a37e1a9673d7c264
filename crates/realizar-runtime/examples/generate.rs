//! Loads a GGUF model and generates from token ids, greedily and then sampled, streaming the
//! ids to stdout as they come.
//!
//! ```text
//! cargo run --release -p realizar-runtime --example generate -- MODEL.gguf 504,3575,282,4649,314 [N]
//! ```
use std::io::Write;
use std::ops::ControlFlow;

use realizar_runtime::{generate, DecoderModel, GenerateConfig, LoadOptions, SamplerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: generate MODEL.gguf ID,ID,... [MAX_TOKENS]";
    let path = args.next().ok_or(usage)?;
    let prompt: Vec<u32> = args
        .next()
        .ok_or(usage)?
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let max_tokens: usize = args.next().map_or(Ok(32), |s| s.parse())?;

    let model = DecoderModel::load(&path, &LoadOptions::default())?;
    let mut session = model.session()?;
    for (label, sampler) in [
        ("greedy", SamplerConfig::default()),
        (
            "sampled (T=0.8, top-k 40, top-p 0.95, seed 42)",
            SamplerConfig {
                temperature: 0.8,
                top_k: 40,
                top_p: 0.95,
                seed: 42,
                ..SamplerConfig::default()
            },
        ),
    ] {
        println!("{label}:");
        let config = GenerateConfig {
            max_tokens,
            sampler,
            ..GenerateConfig::default()
        };
        let mut out = std::io::stdout().lock();
        let g = generate(&mut session, &prompt, &config, None, |id, _| {
            if let Some(id) = id {
                let _ = write!(out, "{id} ");
            }
            let _ = out.flush();
            ControlFlow::Continue(())
        })?;
        println!(
            "\n[{}; prefill {:.1} tok/s, decode {:.1} tok/s]",
            g.stop_reason.as_str(),
            g.timings.prefill_tok_s(),
            g.timings.decode_tok_s()
        );
    }
    Ok(())
}

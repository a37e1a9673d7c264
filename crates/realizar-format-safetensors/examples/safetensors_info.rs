//! Prints the tensors of a safetensors file, or of the weights of a Hugging Face model
//! directory: dtype, shape and bytes per tensor, then totals.
//!
//! ```text
//! cargo run -p realizar-format-safetensors --example safetensors_info -- models/minilm-l6
//! ```

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use realizar_format_safetensors::{Dtype, MmapSafetensors, ShardedIndex};

/// Prints one file's tensors and adds its counts to `totals` (dtype → (tensors, elements,
/// bytes)).
fn print_file(
    path: &Path,
    totals: &mut BTreeMap<Dtype, (usize, u64, u64)>,
) -> Result<(), Box<dyn Error>> {
    let map = MmapSafetensors::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = map
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "{} ({} bytes, header {} bytes, {} tensors)",
        path.display(),
        map.bytes().len(),
        st.header_len(),
        st.len()
    );
    if let Some(meta) = st.metadata() {
        for (k, v) in meta {
            println!("  metadata {k} = {v}");
        }
    }
    for (name, view) in st.tensors() {
        println!(
            "  {name:<60} {:<8} {:<20} {:>12} bytes",
            view.dtype.name(),
            format!("{:?}", view.shape),
            view.data.len()
        );
        let t = totals.entry(view.dtype).or_default();
        t.0 += 1;
        t.1 += view.n_elements() as u64;
        t.2 += view.data.len() as u64;
    }
    Ok(())
}

fn run(path: &Path) -> Result<(), Box<dyn Error>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        // A directory: its `model.safetensors`, else the shards its index names.
        let single = path.join("model.safetensors");
        if single.is_file() {
            vec![single]
        } else {
            let index_path = path.join("model.safetensors.index.json");
            let text = std::fs::read_to_string(&index_path)
                .map_err(|e| format!("{}: {e}", index_path.display()))?;
            let index =
                ShardedIndex::parse(&text).map_err(|e| format!("{}: {e}", index_path.display()))?;
            println!("sharded checkpoint {}", index_path.display());
            index.shards().iter().map(|s| path.join(s)).collect()
        }
    } else {
        vec![path.to_path_buf()]
    };
    let mut totals = BTreeMap::new();
    for f in &files {
        print_file(f, &mut totals)?;
    }
    let (mut n, mut elems, mut bytes) = (0, 0, 0);
    println!("totals:");
    for (dtype, (t, e, b)) in &totals {
        println!(
            "  {:<8} {t:>6} tensors {e:>14} elements {b:>14} bytes",
            dtype.name()
        );
        n += t;
        elems += e;
        bytes += b;
    }
    println!(
        "  {:<8} {n:>6} tensors {elems:>14} elements {bytes:>14} bytes in {} file(s)",
        "all",
        files.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: safetensors_info FILE.safetensors | MODEL_DIR");
        return ExitCode::from(2);
    };
    match run(Path::new(&path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

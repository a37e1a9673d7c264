//! Prints a GGUF file's metadata and tensor table.
//!
//! `cargo run -p realizar-format-gguf --example gguf_info -- FILE`

use realizar_format_gguf::{MmapGguf, Value};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: gguf_info FILE.gguf");
        std::process::exit(2);
    };
    let map = match MmapGguf::open(&path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {path}: {e}");
            std::process::exit(1);
        }
    };
    let file = match map.parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {path}: {e}");
            std::process::exit(2);
        }
    };
    println!("GGUF v{}, alignment {}", file.version(), file.alignment());
    for (key, value) in file.metadata() {
        match value {
            Value::Array(a) => println!("{key}: [{} x {}]", a.len(), a.element_type()),
            Value::String(s) if s.chars().count() > 80 => {
                println!("{key}: {:?}...", s.chars().take(80).collect::<String>())
            }
            v => println!("{key}: {v:?}"),
        }
    }
    let mut total = 0u64;
    for t in file.tensors() {
        println!("{:<40} {:>6} {:?} {} bytes", t.name, t.ty, t.dims, t.size);
        total += t.size;
    }
    println!("{} tensors, {total} bytes", file.tensors().len());
}

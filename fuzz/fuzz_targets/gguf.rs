#![no_main]
//! Parses arbitrary bytes as GGUF; on success, touches every value and tensor view.

use libfuzzer_sys::fuzz_target;
use realizar_format_gguf::{GgufFile, Value};

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = GgufFile::parse(data) {
        for (_, v) in file.metadata() {
            if let Value::Array(a) = v {
                let _ = a.iter().count();
                let _ = a.unsigned();
            }
            let _ = v.to_owned_value();
        }
        for t in file.tensors() {
            if let Ok(bytes) = file.tensor_data(t.name) {
                assert_eq!(bytes.len() as u64, t.size);
            }
        }
    }
});

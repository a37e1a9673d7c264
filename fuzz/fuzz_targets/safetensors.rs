//! Fuzzes the safetensors reader, the sharded index reader and the Hugging Face `config.json`
//! reader: any input must give a value or a typed error, never a panic, and every view of a
//! parsed file must be exactly its tensor's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use realizar_format_safetensors::{SafeTensors, ShardedIndex};
use realizar_runtime::hf_dir::HfConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = SafeTensors::parse(data) {
        let mut total = 0usize;
        for (name, view) in st.tensors() {
            assert_eq!(view.data.len(), view.n_elements() * view.dtype.size());
            assert_eq!(st.tensor(name).as_ref(), Some(&view));
            // Touch every byte of the view.
            total += view.data.iter().map(|&b| usize::from(b)).sum::<usize>() & 1;
            let _ = view.to_f32_vec();
        }
        assert!(total <= data.len());
        assert_eq!(st.names().count(), st.len());
        let _ = st.metadata().map(|m| m.len());
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = ShardedIndex::parse(text);
        let _ = HfConfig::parse(text);
    }
});

//! A generator of malformed GGUF files, one per check of the reader.
//!
//! Shared by this crate's tests and the CLI's (`#[path]`-included), so it uses std only.
#![allow(dead_code)]

/// Builds GGUF bytes field by field, valid or not.
#[derive(Default, Clone)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// `GGUF`, version, tensor count, metadata count.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A GGUF string: u64 length and bytes.
    pub fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).bytes(s)
    }
    /// A key with a u32 value.
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(4).u32(v)
    }
    /// A key with a string value.
    pub fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.str(key.as_bytes()).u32(8).str(v.as_bytes())
    }
    /// A tensor info record.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads with zeros to a multiple of `align`.
    pub fn pad(&mut self, align: usize) -> &mut Self {
        while self.0.len() % align != 0 {
            self.0.push(0);
        }
        self
    }
    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn done(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// A valid file with one f32 tensor of 8 elements, for truncation cases.
pub fn valid_file() -> Vec<u8> {
    let mut r = Raw::header(3, 1, 1);
    r.kv_str("general.architecture", "llama")
        .tensor("t", &[8], 0, 0)
        .pad(32)
        .zeros(32);
    r.done()
}

/// `(name, bytes)` for every malformed case.
pub fn malformed_cases() -> Vec<(&'static str, Vec<u8>)> {
    let h = Raw::header;
    let mut v: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut add = |name: &'static str, r: &Raw| v.push((name, r.done()));

    add("empty", &Raw(Vec::new()));
    add("bad_magic", &Raw(b"GGML\x03\x00\x00\x00".to_vec()));
    add("version_1", &h(1, 0, 0));
    add("version_4", &h(4, 0, 0));
    add(
        "truncated_counts",
        &Raw(b"GGUF\x03\x00\x00\x00\x01\x00".to_vec()),
    );
    add("huge_tensor_count", &h(3, u64::MAX, 0));
    add("huge_kv_count", &h(3, 0, 1 << 40));
    add("huge_key_length", h(3, 0, 1).u64(u64::MAX - 3).u32(4));
    add(
        "key_invalid_utf8",
        h(3, 0, 1).str(b"\xff\xfe").u32(4).u32(1),
    );
    add("empty_key", h(3, 0, 1).str(b"").u32(4).u32(1));
    add(
        "duplicate_key",
        h(3, 0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2),
    );
    add("unknown_value_type", h(3, 0, 1).str(b"k").u32(13).u32(0));
    add(
        "huge_array_length",
        h(3, 0, 1).str(b"k").u32(9).u32(4).u64(1 << 60),
    );
    {
        let mut r = h(3, 0, 1);
        r.str(b"k").u32(9);
        for _ in 0..20 {
            r.u32(9).u64(1);
        }
        r.u32(9).u32(4).u64(0);
        add("nesting_too_deep", &r);
    }
    add("invalid_bool", h(3, 0, 1).str(b"k").u32(7).u8(2));
    // 10 strings need at least 80 bytes; only 24 remain.
    add(
        "string_array_count_exceeds_bytes",
        h(3, 0, 1).str(b"k").u32(9).u32(8).u64(10).zeros(24),
    );
    add(
        "alignment_wrong_type",
        h(3, 0, 1).kv_str("general.alignment", "32"),
    );
    add("alignment_zero", h(3, 0, 1).kv_u32("general.alignment", 0));
    add(
        "alignment_not_power_of_two",
        h(3, 0, 1).kv_u32("general.alignment", 48),
    );
    add(
        "alignment_too_large",
        h(3, 0, 1).kv_u32("general.alignment", 1 << 30),
    );
    add(
        "architecture_wrong_type",
        h(3, 0, 1).str(b"general.architecture").u32(4).u32(7),
    );
    add(
        "tokens_wrong_element_type",
        h(3, 0, 1)
            .str(b"tokenizer.ggml.tokens")
            .u32(9)
            .u32(4)
            .u64(1)
            .u32(5),
    );
    add(
        "string_array_invalid_utf8",
        h(3, 0, 1)
            .str(b"tokenizer.ggml.tokens")
            .u32(9)
            .u32(8)
            .u64(2)
            .str(b"ok")
            .str(b"\xc3\x28"),
    );
    add(
        "bool_array_invalid",
        h(3, 0, 1).str(b"k").u32(9).u32(7).u64(2).u8(1).u8(7),
    );
    add(
        "nested_unknown_type",
        h(3, 0, 1).str(b"k").u32(9).u32(9).u64(1).u32(77).u64(0),
    );
    add(
        "nested_huge_length",
        h(3, 0, 1)
            .str(b"k")
            .u32(9)
            .u32(9)
            .u64(1)
            .u32(10)
            .u64(u64::MAX),
    );
    add("truncated_value", h(3, 0, 1).str(b"k").u32(10).u32(1));
    add(
        "n_dims_zero",
        h(3, 1, 0).tensor("t", &[], 0, 0).pad(32).zeros(64),
    );
    add(
        "n_dims_five",
        h(3, 1, 0)
            .tensor("t", &[1, 1, 1, 1, 1], 0, 0)
            .pad(32)
            .zeros(64),
    );
    add(
        "n_dims_huge",
        h(3, 1, 0).str(b"t").u32(u32::MAX).u64(1).u32(0).u64(0),
    );
    add(
        "zero_dimension",
        h(3, 1, 0).tensor("t", &[4, 0], 0, 0).pad(32).zeros(64),
    );
    add(
        "unknown_tensor_type",
        h(3, 1, 0).tensor("t", &[4], 99, 0).pad(32).zeros(64),
    );
    add(
        "retired_tensor_type",
        h(3, 1, 0).tensor("t", &[32], 4, 0).pad(32).zeros(64),
    );
    add(
        "not_block_multiple",
        h(3, 1, 0).tensor("t", &[33], 2, 0).pad(32).zeros(64),
    );
    add(
        "element_count_overflow",
        h(3, 1, 0)
            .tensor("t", &[1 << 32, 1 << 32, 1 << 32], 0, 0)
            .pad(32)
            .zeros(64),
    );
    // Fits in u64 as an element count, wraps once multiplied by the type size.
    add(
        "byte_size_wrap",
        h(3, 1, 0)
            .tensor("t", &[1 << 31, 1 << 31], 0, 0)
            .pad(32)
            .zeros(64),
    );
    add(
        "misaligned_offset",
        h(3, 1, 0).tensor("t", &[8], 0, 4).pad(32).zeros(64),
    );
    add(
        "tensor_past_end",
        h(3, 1, 0).tensor("t", &[1024], 0, 0).pad(32).zeros(64),
    );
    add(
        "offset_plus_size_overflow",
        h(3, 1, 0)
            .tensor("t", &[8], 0, u64::MAX - 31)
            .pad(32)
            .zeros(64),
    );
    add(
        "overlapping_tensors",
        h(3, 2, 0)
            .tensor("a", &[16], 0, 0)
            .tensor("b", &[16], 0, 32)
            .pad(32)
            .zeros(128),
    );
    add(
        "duplicate_tensor_name",
        h(3, 2, 0)
            .tensor("a", &[8], 0, 0)
            .tensor("a", &[8], 0, 32)
            .pad(32)
            .zeros(64),
    );
    add(
        "tensor_name_invalid_utf8",
        h(3, 1, 0).str(b"\x80").u32(1).u64(8).u32(0).u64(0),
    );
    add("data_section_past_end", h(3, 1, 0).tensor("t", &[8], 0, 0));
    // The data section starts exactly at the end of the file: the tensor has no bytes.
    add(
        "data_section_at_end",
        h(3, 1, 0).tensor("t", &[8], 0, 0).pad(32),
    );
    {
        let full = valid_file();
        add(
            "truncated_tensor_info",
            &Raw(full[..full.len() - 60].to_vec()),
        );
        add("truncated_data", &Raw(full[..full.len() - 1].to_vec()));
    }
    v
}

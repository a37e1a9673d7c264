//! Real quantized tensors from the fetched models through `realizar-quant`: every tensor's
//! rows decode to finite values of a plausible size, and the fused dot products (SIMD and
//! scalar twin) agree with the dot product of the dequantized rows.

use std::collections::BTreeSet;

use realizar_format_gguf::MmapGguf;
use realizar_quant::{dequantize_row, matvec, quantize_row, vec_dot, vec_dot_scalar, QuantType};

use crate::common::model_path;

/// A deterministic, non-trivial activation row.
fn activation(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 31 + seed * 17) as f32 * 0.37).sin() * (1.0 + (i % 7) as f32 * 0.3))
        .collect()
}

/// ggml's legacy quantizers are idempotent on their own output: quantizing a decoded block
/// gives back the file's bytes. Holds for the block layouts, the scale rules and the rounding
/// of `quantize_row_*_ref` together, on up to 256 rows spread over the tensor.
fn requantizes_to_same_bytes(
    model: &str,
    tensor: &str,
    ty: QuantType,
    n: usize,
    data: &[u8],
    rb: usize,
) {
    let n_rows = data.len() / rb;
    let step = n_rows.div_ceil(256).max(1);
    let mut y = vec![0f32; n];
    let mut q = vec![0u8; rb];
    for r in (0..n_rows).step_by(step) {
        let row = &data[r * rb..(r + 1) * rb];
        dequantize_row(ty, row, &mut y).expect("dequantize row");
        quantize_row(ty, &y, &mut q).expect("quantize row");
        assert!(
            q == row,
            "{model}: {tensor} row {r} ({ty}) does not requantize to its bytes"
        );
    }
}

/// Checks the rows `picks` of every tensor; returns the quantized types seen.
fn check_model(name: &str) -> BTreeSet<&'static str> {
    let map = MmapGguf::open(model_path(name)).expect("open model");
    let file = map.parse().expect("parse model");
    let mut seen = BTreeSet::new();
    for t in file.tensors() {
        let ty = QuantType::from_ggml_id(t.ty.id())
            .unwrap_or_else(|| panic!("{name}: tensor {} has unsupported type {:?}", t.name, t.ty));
        let n = t.dims[0] as usize;
        let n_rows = (t.n_elements() / t.dims[0]) as usize;
        let data = file.tensor_data(t.name).expect("tensor data");
        let rb = ty.row_bytes(n).expect("rows are whole blocks");
        assert_eq!(data.len(), rb * n_rows, "{name}: {} size", t.name);
        seen.insert(ty.name());

        let vt = ty.vec_dot_type();
        let a = activation(n, n_rows);
        let mut aq = vec![0u8; vt.row_bytes(n).expect("activation row")];
        quantize_row(vt, &a, &mut aq).expect("quantize activation");
        let mut ad = vec![0f32; n];
        dequantize_row(vt, &aq, &mut ad).expect("dequantize activation");

        let picks = [0, n_rows / 2, n_rows - 1];
        for &r in &picks {
            let row = &data[r * rb..(r + 1) * rb];
            let mut wd = vec![0f32; n];
            dequantize_row(ty, row, &mut wd).expect("dequantize row");
            assert!(
                wd.iter().all(|v| v.is_finite() && v.abs() < 1e4),
                "{name}: {} row {r} has non-finite or huge values",
                t.name
            );
            assert!(
                wd.iter().any(|v| *v != 0.0),
                "{name}: {} row {r} decodes to all zeros",
                t.name
            );
            let exact: f64 = wd.iter().zip(&ad).map(|(w, x)| *w as f64 * *x as f64).sum();
            let mag: f64 = wd
                .iter()
                .zip(&ad)
                .map(|(w, x)| (*w as f64 * *x as f64).abs())
                .sum();
            // Q8_1 keeps `d * sum(q)` in f16: allow for that rounding.
            let tol = if vt == QuantType::Q8_1 { 2e-3 } else { 2e-5 } * mag + 1e-6;
            let fused = vec_dot(ty, n, row, &aq).expect("vec_dot");
            let scalar = vec_dot_scalar(ty, n, row, &aq).expect("vec_dot_scalar");
            for (which, v) in [("simd", fused), ("scalar", scalar)] {
                assert!(
                    (v as f64 - exact).abs() <= tol,
                    "{name}: {} row {r} {which} dot {v} vs dequantized {exact} (tol {tol})",
                    t.name
                );
            }
            assert!(
                ((fused - scalar) as f64).abs() <= 1e-5 * mag + 1e-6,
                "{name}: {} row {r}: simd {fused} vs scalar {scalar}",
                t.name
            );
        }
        if matches!(
            ty,
            QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q5_0 | QuantType::Q8_0
        ) {
            requantizes_to_same_bytes(name, t.name, ty, n, data, rb);
        }
        // matvec over a range of rows is bit-identical to per-row vec_dot.
        let span = 0..n_rows.min(40);
        let mut out = vec![0f32; span.len()];
        matvec(ty, n, data, span.clone(), &aq, &mut out).expect("matvec");
        for (r, o) in span.zip(&out) {
            let d = vec_dot(ty, n, &data[r * rb..(r + 1) * rb], &aq).expect("vec_dot");
            assert_eq!(
                o.to_bits(),
                d.to_bits(),
                "{name}: {} matvec row {r}",
                t.name
            );
        }
    }
    seen
}

#[test]
fn smollm2_real_blocks_decode_and_dot() {
    let seen = check_model("smollm2-135m");
    for ty in ["q4_1", "q8_0", "f32"] {
        assert!(seen.contains(ty), "SmolLM2 has {ty} tensors; saw {seen:?}");
    }
}

#[test]
fn gemma3_real_blocks_decode_and_dot() {
    let seen = check_model("gemma3-270m");
    for ty in ["q5_0", "q8_0", "q4_K", "q6_K", "f32"] {
        assert!(seen.contains(ty), "Gemma3 has {ty} tensors; saw {seen:?}");
    }
}

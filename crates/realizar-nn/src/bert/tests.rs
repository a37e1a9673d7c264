use super::*;
use crate::layers::erf_slow;

fn test_backend() -> Arc<dyn Backend> {
    Arc::new(crate::CpuBackend::new(2).expect("a CPU backend"))
}

/// A deterministic xorshift generator of values in [-scale, scale).
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self, scale: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32(scale)).collect()
    }
}

fn tiny_config() -> BertConfig {
    BertConfig {
        vocab_size: 20,
        hidden_size: 12,
        num_hidden_layers: 2,
        num_attention_heads: 3,
        intermediate_size: 19,
        max_position_embeddings: 9,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: HiddenAct::Gelu,
    }
}

fn random_weights(config: &BertConfig, prefix: &str, seed: u64) -> HashMap<String, F32Tensor> {
    let mut rng = Rng(seed);
    config
        .expected_tensors()
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let data = if name.ends_with("LayerNorm.weight") {
                rng.vec(n, 0.2).into_iter().map(|v| 1.0 + v).collect()
            } else {
                rng.vec(n, 0.5)
            };
            (format!("{prefix}{name}"), F32Tensor { shape, data })
        })
        .collect()
}

/// A direct, unoptimised f64 BERT forward pass, written from the equations.
fn reference_forward(
    w: &HashMap<String, F32Tensor>,
    c: &BertConfig,
    ids: &[u32],
    types: &[u32],
    mask: &[u32],
) -> Vec<Vec<f64>> {
    let h = c.hidden_size;
    let get = |n: &str| -> Vec<f64> { w[n].data.iter().map(|&v| f64::from(v)).collect() };
    let ln = |x: &mut Vec<Vec<f64>>, p: &str| {
        let (g, b) = (get(&format!("{p}.weight")), get(&format!("{p}.bias")));
        for r in x.iter_mut() {
            let mean = r.iter().sum::<f64>() / h as f64;
            let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
            for (j, v) in r.iter_mut().enumerate() {
                *v = (*v - mean) / (var + c.layer_norm_eps).sqrt() * g[j] + b[j];
            }
        }
    };
    let lin = |x: &Vec<Vec<f64>>, p: &str| -> Vec<Vec<f64>> {
        let (wt, b) = (get(&format!("{p}.weight")), get(&format!("{p}.bias")));
        let n_out = b.len();
        let n_in = wt.len() / n_out;
        x.iter()
            .map(|r| {
                (0..n_out)
                    .map(|o| b[o] + (0..n_in).map(|k| r[k] * wt[o * n_in + k]).sum::<f64>())
                    .collect()
            })
            .collect()
    };
    let (we, pe, te) = (
        get("embeddings.word_embeddings.weight"),
        get("embeddings.position_embeddings.weight"),
        get("embeddings.token_type_embeddings.weight"),
    );
    let mut x: Vec<Vec<f64>> = ids
        .iter()
        .enumerate()
        .map(|(p, &id)| {
            (0..h)
                .map(|j| we[id as usize * h + j] + pe[p * h + j] + te[types[p] as usize * h + j])
                .collect()
        })
        .collect();
    ln(&mut x, "embeddings.LayerNorm");
    let d = c.head_dim();
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        let q = lin(&x, &format!("{p}.attention.self.query"));
        let k = lin(&x, &format!("{p}.attention.self.key"));
        let v = lin(&x, &format!("{p}.attention.self.value"));
        let mut ctx = vec![vec![0f64; h]; ids.len()];
        for hd in 0..c.num_attention_heads {
            for i in 0..ids.len() {
                let scores: Vec<f64> = (0..ids.len())
                    .map(|j| {
                        let s: f64 = (0..d).map(|e| q[i][hd * d + e] * k[j][hd * d + e]).sum();
                        s / (d as f64).sqrt() + if mask[j] == 1 { 0.0 } else { -1e30 }
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for e_ in 0..d {
                    ctx[i][hd * d + e_] =
                        (0..ids.len()).map(|j| e[j] / z * v[j][hd * d + e_]).sum();
                }
            }
        }
        let mut a = lin(&ctx, &format!("{p}.attention.output.dense"));
        for (r, xr) in a.iter_mut().zip(&x) {
            for (v, xv) in r.iter_mut().zip(xr) {
                *v += xv;
            }
        }
        ln(&mut a, &format!("{p}.attention.output.LayerNorm"));
        let mut inter = lin(&a, &format!("{p}.intermediate.dense"));
        for r in inter.iter_mut() {
            for v in r.iter_mut() {
                *v = 0.5 * *v * (1.0 + erf(*v / 2f64.sqrt()));
            }
        }
        let mut o = lin(&inter, &format!("{p}.output.dense"));
        for (r, ar) in o.iter_mut().zip(&a) {
            for (v, av) in r.iter_mut().zip(ar) {
                *v += av;
            }
        }
        ln(&mut o, &format!("{p}.output.LayerNorm"));
        x = o;
    }
    x
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn erf_matches_known_values() {
    // Values from tables of the error function (A&S table 7.1 and high-precision software).
    for (x, want) in [
        (0.0, 0.0),
        (0.1, 0.1124629160182849),
        (0.5, 0.5204998778130465),
        (1.0, 0.8427007929497149),
        (1.5, 0.9661051464753108),
        (2.0, 0.9953222650189527),
        (2.9, 0.9999589021219005),
        (3.0, 0.9999779095030014),
        (3.5, 0.9999992569016276),
        (4.0, 0.9999999845827421),
        (-1.0, -0.8427007929497149),
        (-3.2, -0.9999939742388483),
        (7.0, 1.0),
    ] {
        let got = erf(x);
        assert!((got - want).abs() < 1e-14, "erf({x}) = {got}, want {want}");
    }
    assert!(erf(f64::NAN).is_nan());
    assert_eq!(erf(f64::INFINITY), 1.0);
    assert_eq!(erf(f64::NEG_INFINITY), -1.0);
}

#[test]
fn gelu_is_x_times_normal_cdf() {
    assert_eq!(gelu_erf(0.0), 0.0);
    // Φ(1) = 0.8413447460685429, Φ(-2) = 0.022750131948179195.
    assert!((gelu_erf(1.0) - 0.841_344_7).abs() < 1e-7);
    assert!((gelu_erf(-2.0) - -0.045_500_26).abs() < 1e-7);
    assert_eq!(gelu_erf(20.0), 20.0);
    assert_eq!(gelu_erf(-20.0), 0.0);
}

#[test]
fn linear_matches_naive_product_for_awkward_sizes() {
    let mut rng = Rng(7);
    for (rows, n_in, n_out) in [
        (1, 1, 1),
        (3, 9, 5),
        (4, 8, 64),
        (5, 40, 200),
        (17, 33, 70),
        (40, 7, 1000),
        (37, 130, 65),
    ] {
        let backend = test_backend();
        let w = rng.vec(n_in * n_out, 1.0);
        let info = QTensor {
            name: "w".into(),
            ty: QuantType::F32,
            rows: n_out,
            cols: n_in,
            offset: 0,
            len: n_in * n_out * 4,
        };
        let store: WeightBytes = Arc::new(F32Store(w.clone()));
        let lin = Linear {
            weight: backend.upload(info, &store).unwrap(),
            bias: rng.vec(n_out, 1.0),
            out_dim: n_out,
        };
        let x = rng.vec(rows * n_in, 1.0);
        let mut out = vec![f32::NAN; rows * n_out];
        let mut act = ActScratch::default();
        linear(&*backend, &x, &lin, &mut out, &mut act).unwrap();
        for r in 0..rows {
            for o in 0..n_out {
                let want: f64 = f64::from(lin.bias[o])
                    + (0..n_in)
                        .map(|k| f64::from(x[r * n_in + k]) * f64::from(w[o * n_in + k]))
                        .sum::<f64>();
                let got = f64::from(out[r * n_out + o]);
                assert!(
                    (got - want).abs() < 1e-4,
                    "rows {rows} in {n_in} out {n_out}"
                );
            }
        }
    }
}

#[test]
fn forward_matches_f64_reference_with_types_and_mask() {
    let c = tiny_config();
    let w = random_weights(&c, "", 42);
    let model = BertModel::load(c.clone(), &w, test_backend()).unwrap();
    let ids = [1u32, 5, 19, 0, 7, 3];
    let types = [0u32, 0, 0, 1, 1, 1];
    let mask = [1u32, 1, 1, 1, 0, 1];
    let input = BertInput {
        ids: &ids,
        type_ids: Some(&types),
        attention_mask: Some(&mask),
    };
    let got = model.encode(&[input]).unwrap();
    let want: Vec<f64> = reference_forward(&w, &c, &ids, &types, &mask).concat();
    assert_eq!(got[0].len(), want.len());
    assert!(
        max_diff(&got[0], &want) < 1e-4,
        "{}",
        max_diff(&got[0], &want)
    );

    let layers = model.encode_all_layers(&input).unwrap();
    assert_eq!(layers.len(), c.num_hidden_layers + 1);
    assert_eq!(layers.last().unwrap(), &got[0]);
}

#[test]
fn packed_batch_equals_one_by_one() {
    let c = tiny_config();
    let w = random_weights(&c, "", 3);
    let model = BertModel::load(c, &w, test_backend()).unwrap();
    let seqs: [&[u32]; 4] = [
        &[2, 3, 4],
        &[9],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9],
        &[0, 0, 11, 12, 13],
    ];
    let inputs: Vec<BertInput> = seqs.iter().map(|s| BertInput::new(s)).collect();
    let batch = model.encode(&inputs).unwrap();
    for (input, got) in inputs.iter().zip(&batch) {
        let alone = model.encode(std::slice::from_ref(input)).unwrap();
        assert_eq!(got.len(), input.ids.len() * 12);
        let diff = got
            .iter()
            .zip(&alone[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{diff}");
    }
    assert!(model.encode(&[]).unwrap().is_empty());
}

#[test]
fn bert_prefix_is_detected() {
    let c = tiny_config();
    let plain = BertModel::load(c.clone(), &random_weights(&c, "", 5), test_backend()).unwrap();
    let prefixed =
        BertModel::load(c.clone(), &random_weights(&c, "bert.", 5), test_backend()).unwrap();
    let ids = [1u32, 2, 3];
    assert_eq!(
        plain.encode(&[BertInput::new(&ids)]).unwrap(),
        prefixed.encode(&[BertInput::new(&ids)]).unwrap()
    );
}

#[test]
fn config_errors_name_the_key() {
    let check = |edit: fn(&mut BertConfig), want: &str| {
        let mut c = tiny_config();
        edit(&mut c);
        match c.validate() {
            Err(BertError::InvalidConfig { key, .. }) => assert_eq!(key, want),
            other => panic!("expected InvalidConfig({want}), got {other:?}"),
        }
    };
    check(|c| c.num_attention_heads = 5, "num_attention_heads");
    check(|c| c.num_attention_heads = 0, "num_attention_heads");
    check(|c| c.hidden_size = 0, "hidden_size");
    check(|c| c.vocab_size = 0, "vocab_size");
    check(|c| c.intermediate_size = 0, "intermediate_size");
    check(|c| c.num_hidden_layers = 0, "num_hidden_layers");
    check(|c| c.max_position_embeddings = 0, "max_position_embeddings");
    check(|c| c.type_vocab_size = 0, "type_vocab_size");
    check(|c| c.layer_norm_eps = f64::NAN, "layer_norm_eps");
    check(|c| c.layer_norm_eps = -1.0, "layer_norm_eps");
    assert!(matches!(
        HiddenAct::from_hf("relu"),
        Err(BertError::InvalidConfig {
            key: "hidden_act",
            ..
        })
    ));
    assert_eq!(HiddenAct::from_hf("gelu").unwrap(), HiddenAct::Gelu);
    // An invalid config is refused by load too.
    let mut c = tiny_config();
    c.num_attention_heads = 5;
    let w = random_weights(&tiny_config(), "", 1);
    assert!(matches!(
        BertModel::load(c, &w, test_backend()),
        Err(BertError::InvalidConfig { .. })
    ));
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let c = tiny_config();
    let mut w = random_weights(&c, "", 1);
    w.remove("encoder.layer.1.output.dense.bias");
    match BertModel::load(c.clone(), &w, test_backend()) {
        Err(BertError::MissingTensor { name }) => {
            assert_eq!(name, "encoder.layer.1.output.dense.bias")
        }
        other => panic!("{other:?}"),
    }

    let mut w = random_weights(&c, "", 1);
    w.get_mut("encoder.layer.0.intermediate.dense.weight")
        .unwrap()
        .shape = vec![12, 19];
    match BertModel::load(c.clone(), &w, test_backend()) {
        Err(BertError::ShapeMismatch {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "encoder.layer.0.intermediate.dense.weight");
            assert_eq!((expected, found), (vec![19, 12], vec![12, 19]));
        }
        other => panic!("{other:?}"),
    }

    let mut w = random_weights(&c, "", 1);
    w.get_mut("embeddings.LayerNorm.bias").unwrap().data.pop();
    assert!(matches!(
        BertModel::load(c.clone(), &w, test_backend()),
        Err(BertError::DataLength {
            expected: 12,
            found: 11,
            ..
        })
    ));

    // A config that claims more layers than the file has.
    let mut more = c.clone();
    more.num_hidden_layers = 3;
    match BertModel::load(more, &random_weights(&c, "", 1), test_backend()) {
        Err(BertError::MissingTensor { name }) => {
            assert!(name.starts_with("encoder.layer.2."), "{name}")
        }
        other => panic!("{other:?}"),
    }

    struct Failing;
    impl WeightSource for Failing {
        fn contains(&self, _: &str) -> bool {
            true
        }
        fn load_f32(&self, _: &str) -> Result<Option<F32Tensor>, SourceError> {
            Err("unsupported dtype".into())
        }
    }
    let err = BertModel::load(c, &Failing, test_backend()).unwrap_err();
    assert!(
        matches!(&err, BertError::Source { name, .. } if name == "embeddings.word_embeddings.weight")
    );
    assert!(err.source().is_some());
}

#[test]
fn bad_inputs_are_typed_errors() {
    let c = tiny_config();
    let model = BertModel::load(c.clone(), &random_weights(&c, "", 9), test_backend()).unwrap();
    let run = |input: BertInput| model.encode(&[BertInput::new(&[1, 2]), input]).unwrap_err();
    assert!(matches!(
        run(BertInput::new(&[1, 20])),
        BertError::TokenOutOfRange {
            sequence: 1,
            position: 1,
            id: 20,
            vocab_size: 20
        }
    ));
    assert!(matches!(
        run(BertInput::new(&[u32::MAX])),
        BertError::TokenOutOfRange { position: 0, .. }
    ));
    assert!(matches!(
        run(BertInput::new(&[])),
        BertError::EmptySequence { sequence: 1 }
    ));
    assert!(matches!(
        run(BertInput::new(&[1; 10])),
        BertError::SequenceTooLong {
            len: 10,
            max: 9,
            ..
        }
    ));
    // Exactly max_position_embeddings tokens is fine.
    assert!(model.encode(&[BertInput::new(&[1; 9])]).is_ok());
    let types = [0u32, 2];
    assert!(matches!(
        run(BertInput {
            ids: &[1, 2],
            type_ids: Some(&types),
            attention_mask: None
        }),
        BertError::TypeIdOutOfRange {
            position: 1,
            id: 2,
            ..
        }
    ));
    assert!(matches!(
        run(BertInput {
            ids: &[1, 2],
            type_ids: Some(&[0]),
            attention_mask: None
        }),
        BertError::LengthMismatch {
            what: "token_type_ids",
            ..
        }
    ));
    assert!(matches!(
        run(BertInput {
            ids: &[1, 2],
            type_ids: None,
            attention_mask: Some(&[1, 1, 1])
        }),
        BertError::LengthMismatch {
            what: "attention_mask",
            ..
        }
    ));
    assert!(matches!(
        run(BertInput {
            ids: &[1, 2],
            type_ids: None,
            attention_mask: Some(&[0, 0])
        }),
        BertError::InvalidMask { .. }
    ));
    assert!(matches!(
        run(BertInput {
            ids: &[1, 2],
            type_ids: None,
            attention_mask: Some(&[1, 2])
        }),
        BertError::InvalidMask { .. }
    ));
    assert!(!run(BertInput::new(&[])).to_string().is_empty());
}

#[test]
fn masked_tokens_do_not_change_the_others() {
    // Padding a sequence with masked tokens leaves the real tokens' states unchanged.
    let c = tiny_config();
    let model = BertModel::load(c.clone(), &random_weights(&c, "", 11), test_backend()).unwrap();
    let short = model.encode(&[BertInput::new(&[4, 5, 6])]).unwrap();
    let mask = [1u32, 1, 1, 0, 0];
    let padded = model
        .encode(&[BertInput {
            ids: &[4, 5, 6, 0, 0],
            type_ids: None,
            attention_mask: Some(&mask),
        }])
        .unwrap();
    let diff = short[0]
        .iter()
        .zip(&padded[0][..3 * 12])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "{diff}");
    let pool = PoolingConfig::mean();
    let a = pool.pool(&short[0], 12, None).unwrap();
    let b = pool.pool(&padded[0], 12, Some(&mask)).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
}

#[test]
fn pooling_modes() {
    // Three tokens of width 2.
    let hidden = [1.0f32, -2.0, 3.0, 4.0, 5.0, -6.0];
    let check = |cfg: PoolingConfig, mask: Option<&[u32]>, want: &[f32]| {
        let got = cfg.pool(&hidden, 2, mask).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() < 1e-6,
                "{cfg:?} {mask:?}: {got:?} vs {want:?}"
            );
        }
    };
    check(PoolingConfig::mean(), None, &[3.0, -4.0 / 3.0]);
    check(PoolingConfig::mean(), Some(&[1, 1, 0]), &[2.0, 1.0]);
    check(PoolingConfig::cls(), None, &[1.0, -2.0]);
    let max = PoolingConfig {
        max_tokens: true,
        ..Default::default()
    };
    check(max, None, &[5.0, 4.0]);
    check(max, Some(&[1, 0, 1]), &[5.0, -2.0]);
    let sqrt = PoolingConfig {
        mean_sqrt_len_tokens: true,
        ..Default::default()
    };
    check(
        sqrt,
        Some(&[1, 1, 0]),
        &[4.0 / 2f32.sqrt(), 2.0 / 2f32.sqrt()],
    );
    let weighted = PoolingConfig {
        weighted_mean_tokens: true,
        ..Default::default()
    };
    check(
        weighted,
        None,
        &[(1.0 + 6.0 + 15.0) / 6.0, (-2.0 + 8.0 - 18.0) / 6.0],
    );
    let last = PoolingConfig {
        last_token: true,
        ..Default::default()
    };
    check(last, Some(&[1, 1, 0]), &[3.0, 4.0]);
    // Several modes concatenate in sentence-transformers' order: cls, max, mean.
    let all = PoolingConfig {
        cls_token: true,
        max_tokens: true,
        mean_tokens: true,
        ..Default::default()
    };
    check(all, None, &[1.0, -2.0, 5.0, 4.0, 3.0, -4.0 / 3.0]);

    assert!(matches!(
        PoolingConfig::default().pool(&hidden, 2, None),
        Err(BertError::NoPoolingMode)
    ));
    assert!(matches!(
        PoolingConfig::mean().pool(&hidden, 4, None),
        Err(BertError::PoolingShape { .. })
    ));
    assert!(matches!(
        PoolingConfig::mean().pool(&hidden, 0, None),
        Err(BertError::PoolingShape { .. })
    ));
    assert!(matches!(
        PoolingConfig::mean().pool(&hidden, 2, Some(&[1])),
        Err(BertError::PoolingShape { .. })
    ));
}

#[test]
fn l2_normalize_makes_unit_vectors() {
    let mut v = [3.0f32, -4.0];
    l2_normalize(&mut v);
    assert_eq!(v, [0.6, -0.8]);
    let mut zero = [0.0f32; 3];
    l2_normalize(&mut zero);
    assert_eq!(zero, [0.0; 3]);
}

#[test]
fn table_erf_agrees_with_the_slow_series_everywhere() {
    let mut worst = 0f64;
    let mut x = -7.0f64;
    while x <= 7.0 {
        let d = (erf(x) - erf_slow(x)).abs();
        worst = worst.max(d);
        x += 0.000_731;
    }
    // Also the points between table entries and around the switch to 1.
    for x in [
        1.0 / 16.0,
        3.0 / 16.0,
        2.999_999,
        3.000_001,
        5.937_5,
        5.999_999,
        6.0,
        6.000_001,
    ] {
        worst = worst.max((erf(x) - erf_slow(x)).abs());
    }
    assert!(worst < 2e-15, "worst difference {worst:e}");
}

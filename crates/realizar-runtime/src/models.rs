//! The models that `cargo xtask fetch-models` brings, by name.

use std::path::{Path, PathBuf};

/// The known model names and their paths inside the models folder.
pub const KNOWN_MODELS: [(&str, &str); 3] = [
    (
        "smollm2-135m",
        "smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    ("gemma3-270m", "gemma3-270m/gemma-3-270m-Q4_K_M.gguf"),
    ("minilm-l6", "minilm-l6"),
];

/// The models folder: `REALIZAR_MODELS` if set, else `./models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// Maps a model name (`smollm2-135m`, `gemma3-270m`, `minilm-l6`) to its file or directory
/// under [`models_dir`]; anything else is taken as a path.
///
/// ```
/// use realizar_runtime::models::resolve_model;
///
/// assert!(resolve_model("minilm-l6").ends_with("minilm-l6"));
/// assert_eq!(resolve_model("some/model.gguf"), std::path::Path::new("some/model.gguf"));
/// ```
pub fn resolve_model(name_or_path: &str) -> PathBuf {
    resolve_in(&models_dir(), name_or_path)
}

/// [`resolve_model`] with an explicit models folder.
pub fn resolve_in(models: &Path, name_or_path: &str) -> PathBuf {
    KNOWN_MODELS
        .iter()
        .find(|(name, _)| *name == name_or_path)
        .map_or_else(|| PathBuf::from(name_or_path), |(_, rel)| models.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_under_the_models_folder_and_paths_pass_through() {
        let m = Path::new("/m");
        assert_eq!(
            resolve_in(m, "smollm2-135m"),
            Path::new("/m/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(
            resolve_in(m, "gemma3-270m"),
            Path::new("/m/gemma3-270m/gemma-3-270m-Q4_K_M.gguf")
        );
        assert_eq!(resolve_in(m, "minilm-l6"), Path::new("/m/minilm-l6"));
        assert_eq!(resolve_in(m, "./minilm-l6"), Path::new("./minilm-l6"));
        assert_eq!(resolve_in(m, "x.gguf"), Path::new("x.gguf"));
        assert_eq!(resolve_in(m, ""), Path::new(""));
    }
}

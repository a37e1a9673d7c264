//! Sharded checkpoints: `model.safetensors.index.json`.

use core::fmt;
use std::collections::{BTreeMap, BTreeSet};

use crate::json::{parse_json, JsonError, JsonValue};

/// The index of a sharded checkpoint: which shard file holds each tensor.
///
/// ```
/// use realizar_format_safetensors::ShardedIndex;
///
/// let idx = ShardedIndex::parse(r#"{
///   "metadata": {"total_size": 24},
///   "weight_map": {"a": "model-00001-of-00002.safetensors",
///                  "b": "model-00002-of-00002.safetensors"}
/// }"#).unwrap();
/// assert_eq!(idx.shard_for("b"), Some("model-00002-of-00002.safetensors"));
/// assert_eq!(idx.shards().len(), 2);
/// assert_eq!(idx.total_size(), Some(24));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ShardedIndex {
    weight_map: BTreeMap<String, String>,
    metadata: BTreeMap<String, JsonValue>,
}

/// Why a sharded index could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexError {
    /// The text is not valid (strict) JSON.
    Json(JsonError),
    /// The top-level value is not an object.
    NotObject,
    /// There is no `weight_map`.
    MissingWeightMap,
    /// `weight_map` is not an object of strings.
    WeightMapNotStringMap {
        /// The first offending tensor name (empty when `weight_map` itself is not an object).
        tensor: String,
    },
    /// `metadata` is present but not an object.
    MetadataNotObject,
    /// A shard file name that is not a plain relative file name (empty, `.`, `..`, a path
    /// separator, a drive prefix or a NUL byte).
    BadShardName {
        /// The tensor it is given for.
        tensor: String,
        /// The file name.
        file: String,
    },
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Json(e) => write!(f, "sharded index: {e}"),
            IndexError::NotObject => f.write_str("sharded index is not a JSON object"),
            IndexError::MissingWeightMap => f.write_str("sharded index has no `weight_map`"),
            IndexError::WeightMapNotStringMap { tensor } => write!(
                f,
                "sharded index: `weight_map` must map tensor names to file names (at `{tensor}`)"
            ),
            IndexError::MetadataNotObject => {
                f.write_str("sharded index: `metadata` is not an object")
            }
            IndexError::BadShardName { tensor, file } => write!(
                f,
                "sharded index: tensor `{tensor}` is in `{file}`, which is not a plain file name"
            ),
        }
    }
}

impl std::error::Error for IndexError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IndexError::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// True when `name` is a plain file name that stays inside the model directory.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !(name.len() >= 2 && name.as_bytes().get(1) == Some(&b':'))
}

impl ShardedIndex {
    /// Parses the text of a `model.safetensors.index.json`.
    pub fn parse(json_text: &str) -> Result<ShardedIndex, IndexError> {
        let v = parse_json(json_text).map_err(IndexError::Json)?;
        let obj = v.as_object().ok_or(IndexError::NotObject)?;
        let metadata = match obj.get("metadata") {
            None | Some(JsonValue::Null) => BTreeMap::new(),
            Some(JsonValue::Object(m)) => m.clone(),
            Some(_) => return Err(IndexError::MetadataNotObject),
        };
        let map = obj
            .get("weight_map")
            .ok_or(IndexError::MissingWeightMap)?
            .as_object()
            .ok_or(IndexError::WeightMapNotStringMap {
                tensor: String::new(),
            })?;
        let mut weight_map = BTreeMap::new();
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| IndexError::WeightMapNotStringMap {
                    tensor: tensor.clone(),
                })?;
            if !is_plain_file_name(file) {
                return Err(IndexError::BadShardName {
                    tensor: tensor.clone(),
                    file: file.to_string(),
                });
            }
            weight_map.insert(tensor.clone(), file.to_string());
        }
        Ok(ShardedIndex {
            weight_map,
            metadata,
        })
    }

    /// Tensor name → shard file name.
    pub fn weight_map(&self) -> &BTreeMap<String, String> {
        &self.weight_map
    }

    /// The shard file that holds `tensor`.
    pub fn shard_for(&self, tensor: &str) -> Option<&str> {
        self.weight_map.get(tensor).map(String::as_str)
    }

    /// The distinct shard file names, sorted.
    pub fn shards(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.weight_map.values().map(String::as_str).collect();
        set.into_iter().collect()
    }

    /// The index's `metadata` object (empty when absent).
    #[cfg(test)]
    pub(crate) fn metadata(&self) -> &BTreeMap<String, JsonValue> {
        &self.metadata
    }

    /// `metadata.total_size`, the sum of the tensors' byte sizes, when given as an integer.
    pub fn total_size(&self) -> Option<u64> {
        self.metadata.get("total_size").and_then(JsonValue::as_u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_index() {
        let idx = ShardedIndex::parse(
            r#"{"metadata":{"total_size":100,"format":"pt"},"weight_map":{
                "x":"m-2.safetensors","y":"m-1.safetensors","z":"m-2.safetensors"}}"#,
        );
        let idx = idx.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(idx.shards(), ["m-1.safetensors", "m-2.safetensors"]);
        assert_eq!(idx.weight_map().len(), 3);
        assert_eq!(idx.shard_for("x"), Some("m-2.safetensors"));
        assert_eq!(idx.shard_for("w"), None);
        assert_eq!(idx.total_size(), Some(100));
        assert_eq!(idx.metadata().len(), 2);
        let idx = ShardedIndex::parse(r#"{"metadata":null,"weight_map":{}}"#);
        assert_eq!(
            idx.map(|i| (i.total_size(), i.shards().len())),
            Ok((None, 0))
        );
    }

    #[test]
    fn rejects_bad_indexes() {
        let check = |text: &str, want: IndexError| {
            assert_eq!(ShardedIndex::parse(text), Err(want), "{text}");
        };
        check("[]", IndexError::NotObject);
        check("{}", IndexError::MissingWeightMap);
        check(
            r#"{"weight_map":[]}"#,
            IndexError::WeightMapNotStringMap {
                tensor: String::new(),
            },
        );
        check(
            r#"{"weight_map":{"a":1}}"#,
            IndexError::WeightMapNotStringMap { tensor: "a".into() },
        );
        check(
            r#"{"metadata":3,"weight_map":{}}"#,
            IndexError::MetadataNotObject,
        );
        for bad in [
            "",
            ".",
            "..",
            "../x.safetensors",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "C:x",
            "a\u{0}",
        ] {
            let text = format!(
                r#"{{"weight_map":{{"t":"{}"}}}}"#,
                bad.replace('\\', "\\\\").replace('\0', "\\u0000")
            );
            check(
                &text,
                IndexError::BadShardName {
                    tensor: "t".into(),
                    file: bad.into(),
                },
            );
        }
        let e = ShardedIndex::parse(r#"{"weight_map":{"a":"x","a":"y"}}"#);
        assert!(matches!(e, Err(IndexError::Json(_))));
        let e = e
            .err()
            .map(|e| (e.to_string(), std::error::Error::source(&e).is_some()));
        assert_eq!(
            e,
            Some((
                "sharded index: duplicate JSON object key \"a\" (at byte 23)".into(),
                true
            ))
        );
    }

    #[test]
    fn error_messages_differ() {
        let errs = [
            IndexError::NotObject,
            IndexError::MissingWeightMap,
            IndexError::WeightMapNotStringMap { tensor: "t".into() },
            IndexError::MetadataNotObject,
            IndexError::BadShardName {
                tensor: "t".into(),
                file: "..".into(),
            },
        ];
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        for (i, m) in msgs.iter().enumerate() {
            assert!(msgs[..i].iter().all(|o| o != m));
            assert!(std::error::Error::source(&errs[i]).is_none());
        }
    }
}

//! `MmapGguf`: a mapped file parses like its bytes, and every way the file can change on disk
//! after it was mapped (size, replacement, modification in place) is reported by
//! `check_unchanged`, naming what changed; only regular files are mapped.
#![cfg(feature = "mmap")]

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use realizar_format_gguf::{GgmlType, GgufWriter, MmapGguf, OwnedValue};

fn file(tag: &str) -> (PathBuf, Vec<u8>) {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", OwnedValue::String("llama".into()));
    w.add_tensor("t", &[8], GgmlType::F32, vec![1u8; 32])
        .unwrap();
    let bytes = w.to_bytes();
    let path =
        std::env::temp_dir().join(format!("realizar-mmap-{}-{tag}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
fn an_unchanged_file_maps_and_parses() {
    let (path, bytes) = file("same");
    let m = MmapGguf::open(&path).unwrap();
    assert_eq!(m.bytes(), &bytes[..]);
    assert!(m.check_unchanged().is_ok());
    assert_eq!(m.parse().unwrap().tensor_data("t").unwrap(), &[1u8; 32][..]);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_size_change_is_reported_with_both_sizes() {
    let (path, bytes) = file("size");
    let m = MmapGguf::open(&path).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0; 7])
        .unwrap();
    let e = m.check_unchanged().unwrap_err().to_string();
    let want = format!(
        "its size went from {} to {} bytes",
        bytes.len(),
        bytes.len() + 7
    );
    assert!(e.contains(&want), "{e}");
    assert!(e.contains("changed on disk since it was loaded"), "{e}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_replacement_of_the_same_size_is_reported() {
    let (path, bytes) = file("replaced");
    let m = MmapGguf::open(&path).unwrap();
    let other = path.with_extension("other");
    std::fs::write(&other, &bytes).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let e = m.check_unchanged().unwrap_err().to_string();
    assert!(e.contains("it was replaced by another file"), "{e}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_modification_in_place_is_reported() {
    let (path, _) = file("modified");
    let m = MmapGguf::open(&path).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::End(-4)).unwrap();
    f.write_all(&[2; 4]).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let e = m.check_unchanged().unwrap_err().to_string();
    assert!(e.contains("it was modified"), "{e}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_removed_file_is_an_error() {
    let (path, _) = file("removed");
    let m = MmapGguf::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(m.check_unchanged().is_err());
}

#[test]
fn only_regular_files_are_mapped() {
    let e = MmapGguf::open(std::env::temp_dir()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

//! The one place this crate maps a file into memory.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::path::Path;

use crate::{GgufError, GgufFile};

/// A GGUF file mapped read-only into memory. Parse it with [`MmapGguf::parse`]; tensor views
/// borrow from the mapping, so no weights are copied.
#[derive(Debug)]
pub struct MmapGguf {
    map: memmap2::Mmap,
}

impl MmapGguf {
    /// Maps the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> io::Result<MmapGguf> {
        let path = path.as_ref();
        // Only a regular file can be mapped: opening a FIFO for reading would block until a
        // writer appears, and a device could be endless.
        if !std::fs::metadata(path)?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (a FIFO, device or directory cannot be mapped)",
            ));
        }
        let file = File::open(path)?;
        // SAFETY: the mapping is read-only and private to this process. As with every mmap, a
        // process that truncates or rewrites the file while it is mapped can change or remove the
        // bytes under us; that is the accepted contract of memmap2 for model files, which are not
        // modified while in use.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(MmapGguf { map })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Parses the mapped bytes.
    pub fn parse(&self) -> Result<GgufFile<'_>, GgufError> {
        GgufFile::parse(&self.map)
    }
}

//! The one place this crate maps a file into memory.
#![allow(unsafe_code)]

use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{GgufError, GgufFile};

/// A GGUF file mapped read-only into memory. Parse it with [`MmapGguf::parse`]; tensor views
/// borrow from the mapping, so no weights are copied.
#[derive(Debug)]
pub struct MmapGguf {
    map: memmap2::Mmap,
    path: PathBuf,
    stamp: FileStamp,
}

/// What identifies a file's contents cheaply: its size, modification time and (on Unix) its
/// device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    dev_ino: Option<(u64, u64)>,
}

impl FileStamp {
    fn of(m: &Metadata) -> FileStamp {
        #[cfg(unix)]
        let dev_ino = {
            use std::os::unix::fs::MetadataExt;
            Some((m.dev(), m.ino()))
        };
        #[cfg(not(unix))]
        let dev_ino = None;
        FileStamp {
            len: m.len(),
            modified: m.modified().ok(),
            dev_ino,
        }
    }
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
        // The stamp of the file that is mapped (from its descriptor, not the path).
        let stamp = FileStamp::of(&file.metadata()?);
        // SAFETY: the mapping is read-only and private to this process. As with every mmap, a
        // process that truncates or rewrites the file while it is mapped can change or remove the
        // bytes under us (reading a removed page raises SIGBUS): users of the mapping call
        // `MmapGguf::check_unchanged` before using it and refuse a changed file, and read the
        // file into memory instead where that guarantee must be absolute.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(MmapGguf {
            map,
            path: path.to_path_buf(),
            stamp,
        })
    }

    /// Checks, with one `stat`, that the file at the mapped path is still the file that was
    /// mapped (same size, modification time, device and inode). A file truncated or rewritten
    /// in place since would make reading the mapping unsafe (SIGBUS on a removed page); one
    /// replaced by another (a rename over it) leaves the mapping intact but is reported too,
    /// since what is served is no longer what is on disk.
    pub fn check_unchanged(&self) -> io::Result<()> {
        let now = FileStamp::of(&std::fs::metadata(&self.path)?);
        if now == self.stamp {
            return Ok(());
        }
        let what = if now.len != self.stamp.len {
            format!("its size went from {} to {} bytes", self.stamp.len, now.len)
        } else if now.dev_ino != self.stamp.dev_ino {
            "it was replaced by another file".to_string()
        } else {
            "it was modified".to_string()
        };
        Err(io::Error::other(format!(
            "{} changed on disk since it was loaded: {what}",
            self.path.display()
        )))
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

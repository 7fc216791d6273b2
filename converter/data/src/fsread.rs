//! Checked, bounded reads of user-given files.
//!
//! Every reader of this crate (and the converter's ONNX loader, and `temper-run`) opens its
//! input through [`open_input`] / [`read_input`] / [`read_input_prefixed`]:
//!
//! * the path is `stat`ed before it is opened, so a FIFO with no writer, a device such as
//!   `/dev/zero`, a socket or a directory is refused with an error naming the file and what it
//!   is, without blocking and without reading a byte (unless [`ReadOptions::allow_special`]);
//! * after opening, the file is checked again (same device and inode, still a regular file), so
//!   a path swapped for a FIFO between the two steps is refused too (on Linux the open itself
//!   is non-blocking);
//! * the size is known before anything is read and must not exceed the caller's cap (from the
//!   format: an NPY header's shape, IDX dims, an ONNX file's 2 GiB protobuf limit, …);
//! * reads go through a `take(cap)`, so a file that grows while it is read cannot exceed it.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::Path;

use crate::error::{DataError, ErrorKind};

/// How [`open_input_with`] treats a path that is not a regular file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Accept FIFOs and character/block devices (read through the cap); directories and
    /// sockets are always refused. Off by default.
    pub allow_special: bool,
}

/// An opened input file, checked.
#[derive(Debug)]
pub struct InputFile {
    /// The open file.
    pub file: File,
    /// Its size in bytes when it was opened (`None` for an allowed special file).
    pub len: Option<u64>,
}

/// What kind of file `m` describes, for messages ("a FIFO", "a character device", …).
pub fn describe_type(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_file() {
        return "a regular file";
    }
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

fn special_ok(m: &Metadata, opts: ReadOptions) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        opts.allow_special && (t.is_fifo() || t.is_char_device() || t.is_block_device())
    }
    #[cfg(not(unix))]
    {
        let _ = (m, opts);
        false
    }
}

fn refuse(path: &Path, m: &Metadata) -> DataError {
    DataError::new(
        path.display().to_string(),
        ErrorKind::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("is {}, not a regular file", describe_type(m)))),
    )
}

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &Metadata, _: &Metadata) -> bool {
    true
}

/// Open options that do not block on a FIFO (Linux: `O_NONBLOCK`, which has no effect on
/// regular files). Elsewhere the `stat` before the open is the guard.
fn open_options(regular: bool) -> fs::OpenOptions {
    let mut o = fs::OpenOptions::new();
    o.read(true);
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64", target_arch = "arm", target_arch = "riscv64")
    ))]
    if regular {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(0o4000); // O_NONBLOCK on these architectures
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64", target_arch = "arm", target_arch = "riscv64")
    )))]
    let _ = regular;
    o
}

/// Opens `path` for reading: regular files only (see the module docs).
pub fn open_input(path: &Path) -> Result<InputFile, DataError> {
    open_input_with(path, ReadOptions::default())
}

/// [`open_input`] with options.
pub fn open_input_with(path: &Path, opts: ReadOptions) -> Result<InputFile, DataError> {
    let before = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let regular = before.is_file();
    if !regular && !special_ok(&before, opts) {
        return Err(refuse(path, &before));
    }
    let file = open_options(regular).open(path).map_err(|e| DataError::io(path, e))?;
    let after = file.metadata().map_err(|e| DataError::io(path, e))?;
    if regular && (!after.is_file() || !same_file(&before, &after)) {
        return Err(refuse(path, &after));
    }
    Ok(InputFile { file, len: regular.then_some(after.len()) })
}

/// An error for a file larger than the reader accepts.
pub fn too_large(path: &Path, len: u64, cap: u64, why: &str) -> DataError {
    DataError::new(path.display().to_string(), ErrorKind::Format(format!("file is {len} bytes, more than the {cap} bytes {why}")))
}

/// Reads at most `cap` bytes from `r` into `out` (appending).
fn read_bounded<R: Read>(r: R, cap: u64, out: &mut Vec<u8>, path: &Path) -> Result<(), DataError> {
    r.take(cap).read_to_end(out).map_err(|e| DataError::io(path, e))?;
    Ok(())
}

/// Reads a whole regular file of at most `cap` bytes; `why` says where the cap comes from
/// (e.g. "an ONNX model may have (2 GiB)"). A larger file is refused before anything is read.
pub fn read_input(path: &Path, cap: u64, why: &str) -> Result<Vec<u8>, DataError> {
    let f = open_input(path)?;
    let len = f.len.unwrap_or(cap);
    if len > cap {
        return Err(too_large(path, len, cap, why));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(len as usize).map_err(|_| too_large(path, len, cap, why))?;
    read_bounded(f.file, cap, &mut out, path)?;
    Ok(out)
}

/// Reads a file whose total size a header tells: the first `prefix` bytes (or the whole file
/// if shorter) are read and passed, with the file's size, to `expect`, which either rejects
/// the file or returns how many bytes it may hold in total. The rest is then read, bounded by
/// that number. So a file is rejected from its header and size without reading its payload.
pub fn read_input_prefixed<F>(path: &Path, prefix: usize, expect: F) -> Result<Vec<u8>, DataError>
where
    F: FnOnce(&[u8], u64) -> Result<u64, DataError>,
{
    let f = open_input(path)?;
    let len = f.len.unwrap_or(u64::MAX);
    let mut file = f.file;
    let mut head = Vec::new();
    read_bounded(&mut file, prefix as u64, &mut head, path)?;
    let total = expect(&head, len)?;
    if len != u64::MAX && len > total {
        return Err(too_large(path, len, total, "its header declares"));
    }
    let rest = total.saturating_sub(head.len() as u64);
    let mut out = head;
    out.try_reserve_exact(len.min(total).saturating_sub(out.len() as u64) as usize)
        .map_err(|_| too_large(path, len, total, "fit in memory"))?;
    // One byte more than allowed, so a file that grew past the header's size is detected.
    read_bounded(&mut file, rest.saturating_add(1), &mut out, path)?;
    if out.len() as u64 > total {
        return Err(too_large(path, out.len() as u64, total, "its header declares (the file grew while read)"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_and_directories() {
        let e = read_input(Path::new("/dev/zero"), 1 << 20, "test").unwrap_err().to_string();
        assert!(e.contains("/dev/zero") && e.contains("character device"), "{e}");
        let e = read_input(Path::new("/"), 1 << 20, "test").unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        let ok = open_input_with(Path::new("/dev/zero"), ReadOptions { allow_special: true }).unwrap();
        assert_eq!(ok.len, None);
    }

    #[test]
    fn caps_and_prefix() {
        let dir = std::env::temp_dir().join(format!("temper-fsread-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.bin");
        fs::write(&p, [7u8; 100]).unwrap();
        assert_eq!(read_input(&p, 100, "t").unwrap().len(), 100);
        let e = read_input(&p, 99, "the test allows").unwrap_err().to_string();
        assert!(e.contains("100 bytes, more than the 99 bytes the test allows"), "{e}");
        let mut seen = None;
        let v = read_input_prefixed(&p, 10, |h, len| {
            seen = Some((h.len(), len));
            Ok(100)
        })
        .unwrap();
        assert_eq!((v.len(), seen), (100, Some((10, 100))));
        assert!(read_input_prefixed(&p, 10, |_, _| Ok(50)).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

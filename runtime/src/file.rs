//! Loading model files from a path (std): checked opens, and a private copy by default.
//!
//! [`ModelFile::open`] reads the file into an owned, 64-byte aligned buffer: a model file
//! replaced, truncated or rewritten on disk while a process runs cannot affect it (a memory
//! mapping of a truncated file faults with `SIGBUS`). [`ModelFile::open_mapped`] maps the file
//! instead (zero copy) and is meant for read-only media only.
//!
//! Both refuse anything but a regular file (FIFOs, devices, directories) before opening it for
//! reading, never block on a FIFO, compare the header's `file_len` with the file's size before
//! reading the rest, and read no more than that size.

use crate::error::LoadError;
use crate::format::{HEADER_SIZE, MAGIC};
use crate::model::{LoadOptions, Model};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest model file loaded from a path (4 GiB).
pub const MODEL_FILE_MAX: u64 = 4 << 30;

/// 64 bytes at 64-byte alignment: the unit of an owned model copy.
#[repr(C, align(64))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Block([u8; 64]);

enum Storage {
    /// A private 64-aligned copy (never resized after loading).
    Owned(Vec<Block>, usize),
    /// A read-only mapping of the file.
    Mapped(memmap2::Mmap),
}

/// A validated model file held in memory: a private copy ([`ModelFile::open`]) or a mapping
/// ([`ModelFile::open_mapped`]).
pub struct ModelFile {
    storage: Storage,
    path: PathBuf,
}

/// The former name of [`ModelFile`] (which now copies by default; see [`ModelFile::open`]).
pub type MappedModel = ModelFile;

impl core::fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kind = if self.is_mapped() { "mapped" } else { "copied" };
        write!(f, "ModelFile({}, {} bytes, {kind})", self.path.display(), self.bytes().len())
    }
}

/// Error opening a model file: I/O, or the file's content.
#[derive(Debug)]
pub enum OpenError {
    /// The file could not be opened, read or mapped, or is not a regular file.
    Io(PathBuf, io::Error),
    /// The file is not a valid model.
    Load(PathBuf, LoadError),
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            OpenError::Load(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for OpenError {}

fn kind_of(m: &Metadata) -> &'static str {
    let t = m.file_type();
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

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &Metadata, _: &Metadata) -> bool {
    true
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `stat`, refuse non-regular files, open without blocking, check it is still the same file,
/// and read the header: returns the open file, its length and the header bytes.
fn open_checked(path: &Path) -> Result<(File, u64, Vec<u8>), OpenError> {
    let err = |e| OpenError::Io(path.to_path_buf(), e);
    let before = std::fs::metadata(path).map_err(err)?;
    if !before.is_file() {
        return Err(err(invalid(format!("is {}, not a regular file", kind_of(&before)))));
    }
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64", target_arch = "arm", target_arch = "riscv64")
    ))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(0o4000); // O_NONBLOCK: never block if the path became a FIFO
    }
    let mut file = o.open(path).map_err(err)?;
    let after = file.metadata().map_err(err)?;
    if !after.is_file() || !same_file(&before, &after) {
        return Err(err(invalid(format!("is {}, not a regular file (it changed while opened)", kind_of(&after)))));
    }
    let len = after.len();
    if len > MODEL_FILE_MAX {
        return Err(err(invalid(format!("the file is {len} bytes, more than the {MODEL_FILE_MAX} bytes a model may have"))));
    }
    let mut head = Vec::with_capacity(HEADER_SIZE);
    (&mut file).take(HEADER_SIZE as u64).read_to_end(&mut head).map_err(err)?;
    if head.len() < HEADER_SIZE || head[..8] != MAGIC {
        // Let the loader name the problem (short file, bad magic) from the header alone.
        let mut blocks = vec![Block([0; 64]); HEADER_SIZE.div_ceil(64)];
        bytemuck::cast_slice_mut::<Block, u8>(&mut blocks)[..head.len()].copy_from_slice(&head);
        let e = Model::from_bytes(&bytemuck::cast_slice::<Block, u8>(&blocks)[..head.len()]).err();
        return Err(match e {
            Some(e) => OpenError::Load(path.to_path_buf(), e),
            None => err(invalid("not a temper model file".into())),
        });
    }
    let declared = u64::from_le_bytes([head[16], head[17], head[18], head[19], head[20], head[21], head[22], head[23]]);
    if declared != len {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid model: the file is {len} bytes but its header says {declared} (truncated or padded file)"),
        )));
    }
    Ok((file, len, head))
}

impl ModelFile {
    /// Read a model file into a private aligned copy and validate it (checksums included).
    ///
    /// The running process never sees later changes to the file: replacing, truncating or
    /// rewriting it on disk is safe. Costs one read of the file at load time.
    pub fn open(path: impl AsRef<Path>) -> Result<ModelFile, OpenError> {
        let path = path.as_ref().to_path_buf();
        let err = |e| OpenError::Io(path.clone(), e);
        let (mut file, len, head) = open_checked(&path)?;
        let n = len as usize;
        let mut blocks: Vec<Block> = Vec::new();
        blocks
            .try_reserve_exact(n.div_ceil(64))
            .map_err(|_| err(io::Error::new(io::ErrorKind::OutOfMemory, format!("cannot allocate {len} bytes for the model"))))?;
        blocks.resize(n.div_ceil(64), Block([0; 64]));
        let buf = &mut bytemuck::cast_slice_mut::<Block, u8>(&mut blocks)[..n];
        buf[..HEADER_SIZE].copy_from_slice(&head);
        file.read_exact(&mut buf[HEADER_SIZE..]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                err(io::Error::new(io::ErrorKind::InvalidData, "the file shrank while it was read (replaced in place?)"))
            } else {
                err(e)
            }
        })?;
        let mut extra = [0u8; 1];
        if file.read(&mut extra).map_err(err)? != 0 {
            return Err(err(io::Error::new(io::ErrorKind::InvalidData, "the file grew while it was read (written in place?)")));
        }
        let f = ModelFile { storage: Storage::Owned(blocks, n), path };
        Model::from_bytes(f.bytes()).map_err(|e| OpenError::Load(f.path.clone(), e))?;
        Ok(f)
    }

    /// Map a model file (zero copy) and validate it (checksums included).
    ///
    /// Only for files nobody modifies while the process runs (read-only media, flash): if the
    /// file is truncated while mapped, reading the model faults (`SIGBUS`). Update such files
    /// by writing a new file and renaming it over the old one (the mapping keeps the old inode).
    pub fn open_mapped(path: impl AsRef<Path>) -> Result<ModelFile, OpenError> {
        let path = path.as_ref().to_path_buf();
        let (file, _, _) = open_checked(&path)?;
        // SAFETY: the mapping is read-only and private to this process; the loader validates
        // every byte it uses. If another process truncates the file while mapped, accesses may
        // fault (SIGBUS) — the documented hazard of this function (see its docs); `open` copies.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| OpenError::Io(path.clone(), e))?;
        let f = ModelFile { storage: Storage::Mapped(map), path };
        Model::from_bytes(f.bytes()).map_err(|e| OpenError::Load(f.path.clone(), e))?;
        Ok(f)
    }

    /// The validated model. The checksums were verified when the file was opened; the
    /// structure is validated again here (cheap).
    pub fn model(&self) -> Result<Model<'_>, OpenError> {
        Model::from_bytes_with(self.bytes(), LoadOptions { verify_checksums: false }).map_err(|e| OpenError::Load(self.path.clone(), e))
    }

    /// The model's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Owned(b, n) => &bytemuck::cast_slice::<Block, u8>(b)[..*n],
            Storage::Mapped(m) => m,
        }
    }

    /// Whether the file is memory-mapped ([`ModelFile::open_mapped`]) rather than copied.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }
}

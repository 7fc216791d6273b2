//! Output paths that cannot destroy inputs.
//!
//! [`check_outputs`] is called by every command before it writes anything: it refuses an
//! output that resolves (after symlinks; hard links by device and inode) to one of the run's
//! inputs or to another of its outputs, and an existing output that is not a regular file
//! (device, FIFO, directory, socket). [`resolve_output`] gives the path to actually replace:
//! the final target of a symlink, so atomic writes (temp file + rename beside the target)
//! write through the link instead of replacing it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{DataError, ErrorKind};
use crate::fsread::describe_type;

fn refused(path: &Path, msg: String) -> DataError {
    DataError::new(path.display().to_string(), ErrorKind::Io(io::Error::new(io::ErrorKind::InvalidInput, msg)))
}

/// Follows symlinks of `path` (also dangling ones) to the path that a write replaces:
/// an absolute path whose last component is not a symlink. Fails on a symlink loop.
fn follow(path: &Path) -> Result<PathBuf, DataError> {
    let mut p =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().map_err(|e| DataError::io(path, e))?.join(path) };
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = fs::read_link(&p).map_err(|e| DataError::io(&p, e))?;
                p = match p.parent() {
                    Some(dir) => dir.join(t),
                    None => t,
                };
            }
            _ => {
                // Canonicalize the directory (resolves `..` and symlinked directories).
                let name = p.file_name().map(|n| n.to_os_string());
                let dir = p.parent().map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()));
                return Ok(match (dir, name) {
                    (Some(d), Some(n)) => d.join(n),
                    _ => p,
                });
            }
        }
    }
    Err(refused(path, "too many levels of symbolic links".into()))
}

/// The path a write to `path` must replace: the final target of a symlink, refused if it
/// exists and is not a regular file.
pub fn resolve_output(path: &Path) -> Result<PathBuf, DataError> {
    let target = follow(path)?;
    if let Ok(m) = fs::metadata(&target) {
        if !m.is_file() {
            return Err(refused(path, format!("output exists and is {}, not a regular file; nothing written", describe_type(&m))));
        }
    }
    Ok(target)
}

/// Device and inode of an existing file.
type FileId = Option<(u64, u64)>;

#[cfg(unix)]
fn file_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &Path) -> Option<(u64, u64)> {
    None
}

/// Checks the outputs of one run against its inputs and each other (see the module docs).
/// The error names both paths; nothing has been written when it is returned.
pub fn check_outputs(inputs: &[&Path], outputs: &[&Path]) -> Result<(), DataError> {
    let ins: Vec<(PathBuf, FileId)> = inputs.iter().map(|p| (follow(p).unwrap_or_else(|_| p.to_path_buf()), file_id(p))).collect();
    let mut seen: Vec<(&Path, PathBuf, FileId)> = Vec::new();
    for &o in outputs {
        let target = resolve_output(o)?;
        let id = file_id(&target);
        let same = |t: &PathBuf, i: &FileId| *t == target || (id.is_some() && *i == id);
        if let Some((k, _)) = inputs.iter().zip(&ins).find(|(_, (t, i))| same(t, i)) {
            return Err(refused(o, format!("output is the same file as the input {}; nothing written", k.display())));
        }
        if let Some((k, _, _)) = seen.iter().find(|(_, t, i)| same(t, i)) {
            return Err(refused(o, format!("output is the same file as the output {} of the same run; nothing written", k.display())));
        }
        seen.push((o, target, id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_inputs_links_and_devices() {
        let d = std::env::temp_dir().join(format!("temper-fsout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let a = d.join("a.onnx");
        fs::write(&a, b"x").unwrap();
        let hard = d.join("hard.onnx");
        fs::hard_link(&a, &hard).unwrap();
        let e = check_outputs(&[&a], &[&hard]).unwrap_err().to_string();
        assert!(e.contains("same file as the input") && e.contains("a.onnx"), "{e}");
        let e = check_outputs(&[&a], &[&a]).unwrap_err().to_string();
        assert!(e.contains("same file as the input"), "{e}");
        #[cfg(unix)]
        {
            let link = d.join("link.tmf");
            std::os::unix::fs::symlink(&a, &link).unwrap();
            assert!(check_outputs(&[&a], &[&link]).is_err());
            let dangling = d.join("dangling");
            std::os::unix::fs::symlink(d.join("target.tmf"), &dangling).unwrap();
            assert_eq!(resolve_output(&dangling).unwrap(), d.canonicalize().unwrap().join("target.tmf"));
        }
        let (o1, o2) = (d.join("o.json"), d.join("./o.json"));
        let e = check_outputs(&[&a], &[&o1, &o2]).unwrap_err().to_string();
        assert!(e.contains("output o") || e.contains("same run"), "{e}");
        let e = check_outputs(&[], &[Path::new("/dev/null")]).unwrap_err().to_string();
        assert!(e.contains("character device"), "{e}");
        assert!(check_outputs(&[&a], &[&d]).unwrap_err().to_string().contains("directory"));
        check_outputs(&[&a], &[&o1, &d.join("o.svg")]).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}

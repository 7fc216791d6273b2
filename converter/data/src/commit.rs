//! One commit for a run's outputs, an advisory lock on them, and cleanup of what dead runs
//! left behind.
//!
//! A command that writes several files (`temper quantize`: the model and its JSON/SVG reports;
//! `temper pipeline`: the model, the distilled FP32 ONNX and three reports) takes an
//! [`OutputLock`] on its primary output before any work, and writes everything at the end
//! with [`OutputLock::commit`]:
//!
//! 1. a journal `.OUT.txn-PID.pending` beside the primary output lists each staged file and its
//!    target (written and synced before anything is staged);
//! 2. each file is staged beside its target as `.NAME.txn-PID` and synced;
//! 3. the journal is renamed to `.OUT.txn-PID.commit` — **the commit point** — and the
//!    directory synced;
//! 4. the staged files are renamed over their targets, in the order given (the model first);
//! 5. the journal is removed.
//!
//! A `kill -9` (or power loss) before step 3 leaves every previous output untouched; the next
//! run on the same output (which takes the lock, so no other run is writing) deletes the staged
//! files (roll back). A kill after step 3 may leave some targets new and some old; the next run
//! on the same output finishes the renames from the journal (roll forward) before anything
//! else, so the set is again complete and of one run. A `.OUT.txn-*.commit` file beside an
//! output therefore means "this set is being replaced; run temper on it again (even a run that
//! fails on its arguments) or finish the renames it lists". Recovery is reported on stderr.
//!
//! The lock is `flock` on `.OUT.lock` beside the (symlink-resolved) primary output, held from
//! before the first input is read until the process exits; a second run on the same output
//! fails at once naming the holder's PID. The holder removes the lock file before unlocking;
//! a process that opened it just before checks after locking that the path still names the
//! file it locked, else opens it again (so a finished or failed run leaves no lock file; a
//! killed one leaves an unlocked one, removed by the next run).
//! Locks are advisory and may not work on network filesystems where `flock` is emulated or
//! unsupported (then the run fails with the lock error rather than proceed unlocked).
//!
//! Stale temporary files of dead processes — `.NAME.PID.tmp`, `.NAME.tmp-PID-N`,
//! `.NAME.txn-PID` and `temper-pipeline-teacher-PID-N.npz` — are removed by
//! [`clean_stale`] when no process with that PID exists (Linux: `/proc/PID`; elsewhere, or if
//! `/proc` is not mounted, nothing is removed). A PID reused by another process keeps the file
//! until that process ends; files written by another machine into a shared directory are
//! judged by this machine's PIDs (do not share an output directory between machines). In
//! directories shared with other programs (the system temp dir) only temper's own
//! `temper-pipeline-teacher-…` caches are considered ([`clean_stale_teacher_caches`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, ErrorKind};

/// The environment variable of the kill test hook: when it names a commit step (`staged`,
/// `committed`, `renamed-N`), the process announces it on stderr and then sleeps forever at
/// that step, so a test can `kill -9` it exactly there. Unset in normal use.
pub const PAUSE_ENV: &str = "TEMPER_TEST_COMMIT_PAUSE";

fn pause_at(step: &str) {
    if std::env::var(PAUSE_ENV).is_ok_and(|v| v == step) {
        eprintln!("temper: paused at commit step {step} ({PAUSE_ENV})");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

fn err(path: &Path, msg: String) -> DataError {
    DataError::new(path.display().to_string(), ErrorKind::Io(io::Error::other(msg)))
}

/// The directory and file name of a resolved path.
fn split(p: &Path) -> Result<(PathBuf, String), DataError> {
    let name = p.file_name().ok_or_else(|| err(p, "output path has no file name".into()))?.to_string_lossy().into_owned();
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok((dir, name))
}

fn sync_dir(dir: &Path) {
    // Best effort: some filesystems refuse fsync on directories.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether process `pid` may be alive: `None` when this cannot be told (no `/proc`).
fn pid_alive(pid: u32) -> Option<bool> {
    if pid == std::process::id() {
        return Some(true);
    }
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new("/proc").join(pid.to_string()).exists())
}

/// The PID in the name of one of temper's temporary files, if `name` is one.
fn temp_pid(name: &str) -> Option<u32> {
    let num = |s: &str| s.parse::<u32>().ok().filter(|_| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    if let Some(rest) = name.strip_prefix("temper-pipeline-teacher-") {
        return num(rest.split('-').next()?);
    }
    if !name.starts_with('.') {
        return None;
    }
    if let Some(stem) = name.strip_suffix(".tmp") {
        // `.NAME.PID.tmp`
        return num(stem.rsplit('.').next()?);
    }
    if let Some((_, tail)) = name.rsplit_once(".txn-") {
        // `.NAME.txn-PID` (staged) or `.NAME.txn-PID.pending|commit` (journal)
        return num(tail.split('.').next()?);
    }
    if let Some((_, tail)) = name.rsplit_once(".tmp-") {
        // `.NAME.tmp-PID-N`
        return num(tail.split('-').next()?);
    }
    None
}

/// Removes the temporary files of dead processes in `dir` (see the module docs); journals are
/// left to [`OutputLock::acquire`], which handles them under the lock. Returns what was removed.
pub fn clean_stale(dir: &Path) -> Vec<PathBuf> {
    clean_stale_matching(dir, |_| true)
}

/// Removes only the teacher-logit caches of dead pipeline runs
/// (`temper-pipeline-teacher-PID-N…`) from `dir`: for shared directories such as the system
/// temp dir, where another program's `.NAME.PID.tmp` must never be touched.
pub fn clean_stale_teacher_caches(dir: &Path) -> Vec<PathBuf> {
    clean_stale_matching(dir, |n| n.starts_with("temper-pipeline-teacher-"))
}

fn clean_stale_matching(dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return removed };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".pending") || name.ends_with(".commit") || !wanted(&name) {
            continue;
        }
        let Some(pid) = temp_pid(&name) else { continue };
        if pid_alive(pid) == Some(false) && e.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// The per-user cache directory for temper's caches (`$XDG_CACHE_HOME/temper`, else
/// `$HOME/.cache/temper`, else the system temp dir), created if needed.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")));
    match base.map(|b| b.join("temper")) {
        Some(d) if fs::create_dir_all(&d).is_ok() => d,
        _ => std::env::temp_dir(),
    }
}

/// An advisory lock on a run's outputs (see the module docs); released when dropped or when
/// the process dies.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    lock_path: PathBuf,
    dir: PathBuf,
    name: String,
    notes: Vec<String>,
}

/// One line of a journal: the staged file and its target.
type Entry = (PathBuf, PathBuf);

fn parse_journal(bytes: &[u8]) -> Vec<Entry> {
    let text = String::from_utf8_lossy(bytes);
    // Only complete lines (a journal cut by a kill may end mid-line).
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    complete
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(s, t)| (PathBuf::from(s), PathBuf::from(t)))
        // Only staged files by their pattern: a damaged line never names another file.
        .filter(|(s, _)| s.file_name().is_some_and(|n| n.to_string_lossy().contains(".txn-")))
        .collect()
}

/// Whether the open `file` is still the one at `path` (same device and inode).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, _: &Path) -> bool {
    true
}

/// The error for a lock held by another process (or that cannot be taken).
fn busy(primary: &Path, lock_path: &Path, file: &mut File, e: fs::TryLockError) -> DataError {
    match e {
        fs::TryLockError::WouldBlock => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another temper run".to_string() } else { format!("another temper run (pid {holder})") };
            err(primary, format!("{who} is writing this output (lock {}); wait for it to finish; nothing written", lock_path.display()))
        }
        fs::TryLockError::Error(e) => err(primary, format!("cannot lock {}: {e}; nothing written", lock_path.display())),
    }
}

impl OutputLock {
    /// Takes the lock on `primary` (its symlink-resolved path), then recovers interrupted
    /// commits on it and removes stale temporary files of dead processes beside it. Fails at
    /// once, naming the holder, when another process holds the lock.
    pub fn acquire(primary: &Path) -> Result<OutputLock, DataError> {
        let target = crate::fsout::resolve_output(primary)?;
        let (dir, name) = split(&target)?;
        let lock_path = dir.join(format!(".{name}.lock"));
        let mut attempts = 0;
        let mut file = loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .map_err(|e| DataError::io(&lock_path, e))?;
            match file.try_lock() {
                // The holder before us may have removed the file (see Drop) after we opened
                // it: then we locked a dead inode; open the path again.
                Ok(()) if same_file(&file, &lock_path) => break file,
                Ok(()) if attempts < 100 => attempts += 1,
                Ok(()) => return Err(err(primary, format!("cannot lock {}: it keeps being replaced", lock_path.display()))),
                Err(e) => return Err(busy(primary, &lock_path, &mut file, e)),
            }
        };
        let _ = file.set_len(0).and_then(|_| file.write_all(std::process::id().to_string().as_bytes()));
        let mut lock = OutputLock { file, lock_path, dir, name, notes: Vec::new() };
        lock.recover();
        for p in clean_stale(&lock.dir) {
            lock.notes.push(format!("removed a stale temporary file of a dead process: {}", p.display()));
        }
        Ok(lock)
    }

    /// What acquiring did besides locking (interrupted commits recovered, stale files
    /// removed), one line each, for the caller to print.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Rolls back `.pending` and rolls forward `.commit` journals of this output: under the
    /// lock, every journal is that of a process that died while writing.
    fn recover(&mut self) {
        let prefix = format!(".{}.txn-", self.name);
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        let mut journals: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                n.starts_with(&prefix) && (n.ends_with(".pending") || n.ends_with(".commit"))
            })
            .collect();
        journals.sort();
        for j in journals {
            let entries = parse_journal(&fs::read(&j).unwrap_or_default());
            let committed = j.extension().is_some_and(|e| e == "commit");
            let mut done = 0;
            for (staged, target) in &entries {
                if !staged.exists() {
                    continue;
                }
                let ok = if committed { fs::rename(staged, target).is_ok() } else { fs::remove_file(staged).is_ok() };
                done += ok as usize;
            }
            for (_, target) in &entries {
                if let Some(d) = target.parent() {
                    sync_dir(d);
                }
            }
            let _ = fs::remove_file(&j);
            sync_dir(&self.dir);
            self.notes.push(if committed {
                format!("completed an interrupted commit ({}): {done} of {} files renamed into place", j.display(), entries.len())
            } else {
                format!("rolled back an interrupted write ({}): {done} staged files removed, the previous outputs kept", j.display())
            });
        }
    }

    /// Writes `files` (target, bytes) as one commit (see the module docs): on `Ok` every
    /// target has its new content; on `Err` none has (nothing renamed), unless the error is in
    /// the renames after the commit point, which the next run on this output completes.
    pub fn commit(&self, files: &[(&Path, &[u8])]) -> Result<(), DataError> {
        let pid = std::process::id();
        let mut entries: Vec<Entry> = Vec::new();
        for (t, _) in files {
            let target = crate::fsout::resolve_output(t)?;
            let (dir, name) = split(&target)?;
            let text = target.to_string_lossy();
            if text.contains('\n') || text.contains('\t') {
                return Err(err(t, "output path contains a newline or tab; nothing written".into()));
            }
            entries.push((dir.join(format!(".{name}.txn-{pid}")), target));
        }
        let journal = self.dir.join(format!(".{}.txn-{pid}.pending", self.name));
        let mut text = String::new();
        for (s, t) in &entries {
            text.push_str(&format!("{}\t{}\n", s.display(), t.display()));
        }
        let cleanup = |upto: usize| {
            for (s, _) in &entries[..upto] {
                let _ = fs::remove_file(s);
            }
            let _ = fs::remove_file(&journal);
        };
        let write = |p: &Path, bytes: &[u8]| -> Result<(), DataError> {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(p).map_err(|e| DataError::io(p, e))?;
            f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| DataError::io(p, e))
        };
        if let Err(e) = write(&journal, text.as_bytes()) {
            cleanup(0);
            return Err(e);
        }
        sync_dir(&self.dir);
        for (i, ((staged, target), (_, bytes))) in entries.iter().zip(files).enumerate() {
            if let Err(e) = write(staged, bytes) {
                cleanup(i + 1);
                return Err(err(target, format!("{e}; nothing written, the previous outputs are kept")));
            }
        }
        pause_at("staged");
        let committed = journal.with_extension("commit");
        if let Err(e) = fs::rename(&journal, &committed) {
            cleanup(entries.len());
            return Err(DataError::io(&committed, e));
        }
        sync_dir(&self.dir);
        pause_at("committed");
        for (i, (staged, target)) in entries.iter().enumerate() {
            fs::rename(staged, target).map_err(|e| {
                err(target, format!("{e}; the commit is recorded in {} and completed by the next run on this output", committed.display()))
            })?;
            pause_at(&format!("renamed-{}", i + 1));
        }
        for (_, t) in &entries {
            if let Some(d) = t.parent() {
                sync_dir(d);
            }
        }
        let _ = fs::remove_file(&committed);
        Ok(())
    }
}

impl Drop for OutputLock {
    /// Removes the lock file while still holding the lock (a process that opened it meanwhile
    /// notices the removal after locking and opens the path again), then unlocks.
    fn drop(&mut self) {
        if cfg!(unix) {
            let _ = fs::remove_file(&self.lock_path);
        }
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("temper-commit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn temp_names_carry_their_pid() {
        assert_eq!(temp_pid(".m.tmf.123.tmp"), Some(123));
        assert_eq!(temp_pid(".d.npz.tmp-45-2"), Some(45));
        assert_eq!(temp_pid(".m.report.json.txn-7"), Some(7));
        assert_eq!(temp_pid(".m.tmf.txn-7.commit"), Some(7));
        assert_eq!(temp_pid("temper-pipeline-teacher-99-0.npz"), Some(99));
        assert_eq!(temp_pid("temper-pipeline-teacher-99-0.tmp.npz"), Some(99));
        assert_eq!(temp_pid("m.tmf"), None);
        assert_eq!(temp_pid(".bashrc"), None);
        assert_eq!(temp_pid(".x.tmp"), None);
        assert_eq!(temp_pid(".x.-1.tmp"), None);
    }

    #[test]
    fn journals_are_recovered_under_the_lock() {
        let d = tmp("recover");
        let (a, b) = (d.join("m.tmf"), d.join("m.report.json"));
        fs::write(&a, b"old model").unwrap();
        fs::write(&b, b"old report").unwrap();
        // A committed journal of a dead run: the next lock finishes the renames.
        let (sa, sb) = (d.join(".m.tmf.txn-1"), d.join(".m.report.json.txn-1"));
        fs::write(&sb, b"new report").unwrap();
        fs::write(&a, b"new model").unwrap(); // the first rename had happened
        let j = d.join(".m.tmf.txn-1.commit");
        fs::write(&j, format!("{}\t{}\n{}\t{}\n", sa.display(), a.display(), sb.display(), b.display())).unwrap();
        let lock = OutputLock::acquire(&a).unwrap();
        assert!(lock.notes().iter().any(|n| n.contains("completed an interrupted commit")), "{:?}", lock.notes());
        assert_eq!(fs::read(&b).unwrap(), b"new report");
        assert!(!j.exists() && !sb.exists());
        // A second lock on the same output fails at once, naming this process.
        let e = OutputLock::acquire(&a).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())) && e.contains("nothing written"), "{e}");
        // A commit replaces both.
        lock.commit(&[(&a, b"third model"), (&b, b"third report")]).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"third model");
        assert_eq!(fs::read(&b).unwrap(), b"third report");
        drop(lock);
        // A pending journal (cut mid-line) is rolled back: the previous outputs stay.
        fs::write(&sa, b"staged").unwrap();
        let j = d.join(".m.tmf.txn-2.pending");
        fs::write(&j, format!("{}\t{}\n{}\t{}", sa.display(), a.display(), d.display(), b.display())).unwrap();
        let lock = OutputLock::acquire(&a).unwrap();
        assert!(lock.notes().iter().any(|n| n.contains("rolled back")), "{:?}", lock.notes());
        assert!(!sa.exists() && !j.exists() && d.exists());
        assert_eq!(fs::read(&a).unwrap(), b"third model");
        let lock_file = d.join(".m.tmf.lock");
        assert!(lock_file.exists());
        drop(lock);
        assert!(!lock_file.exists(), "the lock file is removed with the lock");
        // A lock file left unlocked (a killed run) is taken over.
        fs::write(&lock_file, b"1").unwrap();
        drop(OutputLock::acquire(&a).unwrap());
        assert!(!lock_file.exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_files_of_dead_processes_are_removed() {
        if pid_alive(1).is_none() {
            return temper_testkit::skip(temper_testkit::Need::Tools, "/proc (to tell dead processes)");
        }
        let d = tmp("stale");
        // PID 1 is alive; u32::MAX - 1 is above any pid_max.
        let dead = u32::MAX - 1;
        let mine = std::process::id();
        let names = [format!(".m.tmf.{dead}.tmp"), format!(".c.npz.tmp-{dead}-2"), format!("temper-pipeline-teacher-{dead}-0.npz")];
        let kept = [".m.tmf.1.tmp".to_string(), format!(".m.tmf.{mine}.tmp"), "notes.tmp".to_string(), format!("x.{dead}.tmp")];
        for n in names.iter().chain(&kept) {
            fs::write(d.join(n), b"x").unwrap();
        }
        // In a shared directory only the teacher caches go.
        let removed = clean_stale_teacher_caches(&d);
        assert_eq!(removed, [d.join(&names[2])], "{removed:?}");
        assert!(d.join(&names[0]).exists() && d.join(&names[1]).exists());
        let removed = clean_stale(&d);
        assert_eq!(removed.len(), names.len() - 1, "{removed:?}");
        for n in &names {
            assert!(!d.join(n).exists(), "{n} kept");
        }
        for n in &kept {
            assert!(d.join(n).exists(), "{n} removed");
        }
        fs::remove_dir_all(&d).unwrap();
    }
}

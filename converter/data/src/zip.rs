//! Minimal zip reader/writer, enough for NPZ archives.
//!
//! Reading goes through the central directory (authoritative for sizes and
//! offsets), understands zip64 end records and zip64 extra fields, and
//! supports the "stored" (0) and "deflate" (8) methods. Every extracted member
//! is checked against its declared size and CRC-32. Encrypted members and
//! multi-disk archives are rejected. Writing produces stored members only.

use std::io::Read;

use crate::error::{DataError, ErrorKind};
use crate::util::{le_u16, le_u32, le_u64};

const SIG_LOCAL: u32 = 0x0403_4b50;
const SIG_CENTRAL: u32 = 0x0201_4b50;
const SIG_EOCD: u32 = 0x0605_4b50;
const SIG_EOCD64: u32 = 0x0606_4b50;
const SIG_EOCD64_LOC: u32 = 0x0706_4b50;

/// One member as described by the central directory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    method: u16,
    flags: u16,
    crc: u32,
    csize: u64,
    usize_: u64,
    local_offset: u64,
}

fn trunc(label: &str, at: usize, need: usize, len: usize) -> DataError {
    DataError::truncated(label, at as u64, need as u64, len.saturating_sub(at) as u64)
}

fn find_eocd(b: &[u8], label: &str) -> Result<usize, DataError> {
    if b.len() < 22 {
        if b.len() >= 4 && le_u32(b, 0) != Some(SIG_LOCAL) && le_u32(b, 0) != Some(SIG_EOCD) {
            return Err(bad_magic(label, &b[..4]));
        }
        return Err(trunc(label, 0, 22, b.len()));
    }
    let last = b.len() - 22;
    let first = last.saturating_sub(65535);
    let mut fallback = None;
    for i in (first..=last).rev() {
        if le_u32(b, i) == Some(SIG_EOCD) {
            let clen = le_u16(b, i + 20).unwrap_or(0) as usize;
            if i + 22 + clen == b.len() {
                return Ok(i);
            }
            fallback.get_or_insert(i);
        }
    }
    if let Some(i) = fallback {
        return Ok(i);
    }
    let head = &b[..4.min(b.len())];
    if le_u32(b, 0) != Some(SIG_LOCAL) {
        return Err(bad_magic(label, head));
    }
    Err(DataError::format(label, "zip end-of-central-directory record not found (file truncated?)"))
}

fn bad_magic(label: &str, found: &[u8]) -> DataError {
    DataError::at(label, 0, ErrorKind::BadMagic { expected: "zip archive (50 4b 03 04)".into(), found: found.to_vec() })
}

/// Parses the central directory.
pub(crate) fn read_entries(b: &[u8], label: &str) -> Result<Vec<Entry>, DataError> {
    let e = find_eocd(b, label)?;
    let disk = le_u16(b, e + 4).unwrap_or(0);
    let cd_disk = le_u16(b, e + 6).unwrap_or(0);
    let mut count = u64::from(le_u16(b, e + 10).unwrap_or(0));
    let mut cd_size = u64::from(le_u32(b, e + 12).unwrap_or(0));
    let mut cd_off = u64::from(le_u32(b, e + 16).unwrap_or(0));
    if disk != 0 || cd_disk != 0 {
        return Err(DataError::format_at(label, e as u64, "multi-disk zip archives are not supported"));
    }
    let needs64 = count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_off == 0xFFFF_FFFF;
    if e >= 20 && le_u32(b, e - 20) == Some(SIG_EOCD64_LOC) {
        let loc = e - 20;
        let rec = le_u64(b, loc + 8).unwrap_or(u64::MAX);
        let rec = usize::try_from(rec).unwrap_or(usize::MAX);
        if le_u32(b, rec) != Some(SIG_EOCD64) {
            return Err(DataError::format_at(label, loc as u64, "zip64 end record locator points to garbage"));
        }
        let (Some(c), Some(s), Some(o)) = (le_u64(b, rec + 32), le_u64(b, rec + 40), le_u64(b, rec + 48)) else {
            return Err(trunc(label, rec, 56, b.len()));
        };
        count = c;
        cd_size = s;
        cd_off = o;
    } else if needs64 {
        return Err(DataError::format_at(label, e as u64, "zip64 archive without zip64 end record locator"));
    }
    let start = usize::try_from(cd_off).unwrap_or(usize::MAX);
    let size = usize::try_from(cd_size).unwrap_or(usize::MAX);
    let end = start.checked_add(size).filter(|&x| x <= b.len()).ok_or_else(|| {
        DataError::format_at(label, e as u64, format!("central directory (offset {cd_off}, {cd_size} bytes) lies outside the file"))
    })?;
    let cd = &b[..end];
    let mut p = start;
    // Never trust the declared count for allocation: each entry takes >= 46 bytes.
    let mut out = Vec::with_capacity((count as usize).min(size / 46 + 1));
    for _ in 0..count {
        if le_u32(cd, p) != Some(SIG_CENTRAL) {
            if p + 46 > cd.len() {
                return Err(trunc(label, p, 46, cd.len()));
            }
            return Err(DataError::format_at(label, p as u64, "bad central directory entry signature"));
        }
        let (Some(flags), Some(method), Some(crc), Some(cs), Some(us), Some(nl), Some(xl), Some(cl), Some(off)) = (
            le_u16(cd, p + 8),
            le_u16(cd, p + 10),
            le_u32(cd, p + 16),
            le_u32(cd, p + 20),
            le_u32(cd, p + 24),
            le_u16(cd, p + 28),
            le_u16(cd, p + 30),
            le_u16(cd, p + 32),
            le_u32(cd, p + 42),
        ) else {
            return Err(trunc(label, p, 46, cd.len()));
        };
        let (nl, xl, cl) = (nl as usize, xl as usize, cl as usize);
        let total = 46 + nl + xl + cl;
        if p + total > cd.len() {
            return Err(trunc(label, p, total, cd.len()));
        }
        let name = String::from_utf8_lossy(&cd[p + 46..p + 46 + nl]).into_owned();
        let mut csize = u64::from(cs);
        let mut usize_ = u64::from(us);
        let mut local_offset = u64::from(off);
        // zip64 extended information extra field.
        let extra = &cd[p + 46 + nl..p + 46 + nl + xl];
        let mut q = 0;
        while q + 4 <= extra.len() {
            let id = le_u16(extra, q).unwrap_or(0);
            let len = le_u16(extra, q + 2).unwrap_or(0) as usize;
            let Some(body) = extra.get(q + 4..q + 4 + len) else {
                break;
            };
            if id == 0x0001 {
                let mut r = 0;
                let mut next = |v: &mut u64, full: bool| {
                    if full {
                        if let Some(x) = le_u64(body, r) {
                            *v = x;
                            r += 8;
                        }
                    }
                };
                let (fu, fc, fo) = (us == 0xFFFF_FFFF, cs == 0xFFFF_FFFF, off == 0xFFFF_FFFF);
                next(&mut usize_, fu);
                next(&mut csize, fc);
                next(&mut local_offset, fo);
            }
            q += 4 + len;
        }
        out.push(Entry { name, method, flags, crc, csize, usize_, local_offset });
        p += total;
    }
    Ok(out)
}

/// Extracts one member and verifies size and CRC-32.
pub(crate) fn extract(b: &[u8], e: &Entry, label: &str) -> Result<Vec<u8>, DataError> {
    let member = format!("{label}:{}", e.name);
    if e.flags & 1 != 0 {
        return Err(DataError::format(member, "encrypted zip members are not supported"));
    }
    let lo = usize::try_from(e.local_offset).unwrap_or(usize::MAX);
    if le_u32(b, lo) != Some(SIG_LOCAL) {
        if lo.checked_add(30).is_none_or(|x| x > b.len()) {
            return Err(DataError::format_at(label, e.local_offset, format!("local header of {} lies outside the file", e.name)));
        }
        return Err(DataError::format_at(label, e.local_offset, format!("bad local header signature for {}", e.name)));
    }
    let (Some(nl), Some(xl)) = (le_u16(b, lo + 26), le_u16(b, lo + 28)) else {
        return Err(trunc(label, lo, 30, b.len()));
    };
    let data_start = lo + 30 + nl as usize + xl as usize;
    let csize = usize::try_from(e.csize).unwrap_or(usize::MAX);
    let data =
        data_start.checked_add(csize).and_then(|end| b.get(data_start..end)).ok_or_else(|| trunc(label, data_start, csize, b.len()))?;
    let out = match e.method {
        0 => data.to_vec(),
        8 => {
            let mut v = Vec::new();
            flate2::read::DeflateDecoder::new(data)
                .take(e.usize_.saturating_add(1))
                .read_to_end(&mut v)
                .map_err(|err| DataError::format_at(member.clone(), v.len() as u64, format!("corrupt deflate stream: {err}")))?;
            v
        }
        m => return Err(DataError::format(member, format!("unsupported zip compression method {m} (only stored=0 and deflate=8)"))),
    };
    if out.len() as u64 != e.usize_ {
        return Err(DataError::shape(member, format!("member decompresses to {} bytes, directory says {}", out.len(), e.usize_)));
    }
    let mut crc = flate2::Crc::new();
    crc.update(&out);
    if crc.sum() != e.crc {
        return Err(DataError::format(member, format!("CRC-32 mismatch: computed {:08x}, directory says {:08x}", crc.sum(), e.crc)));
    }
    Ok(out)
}

/// Builds a zip archive of stored members. Fails if a name or member is too
/// large for a non-zip64 archive.
pub(crate) fn write_stored(members: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let too_big = |what: &str| format!("{what} too large for a (non-zip64) zip archive");
    for (name, data) in members {
        let nl = u16::try_from(name.len()).map_err(|_| too_big("member name"))?;
        let size = u32::try_from(data.len()).ok().filter(|&s| s != u32::MAX).ok_or_else(|| too_big("member"))?;
        let offset = u32::try_from(out.len()).ok().filter(|&s| s != u32::MAX).ok_or_else(|| too_big("archive"))?;
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        // Local file header.
        out.extend_from_slice(&SIG_LOCAL.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0x0800u16.to_le_bytes()); // flags: UTF-8 names
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&0x0021u16.to_le_bytes()); // date 1980-01-01
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&nl.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory entry.
        central.extend_from_slice(&SIG_CENTRAL.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend_from_slice(&20u16.to_le_bytes()); // version needed
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0x0021u16.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&nl.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let n = u16::try_from(members.len()).ok().filter(|&n| n != u16::MAX).ok_or_else(|| too_big("member count"))?;
    let cd_off = u32::try_from(out.len()).ok().filter(|&s| s != u32::MAX).ok_or_else(|| too_big("archive"))?;
    let cd_size = u32::try_from(central.len()).map_err(|_| too_big("central directory"))?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&SIG_EOCD.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

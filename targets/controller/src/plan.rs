//! Compile-time reading of the sizes a model needs, so that buffers can be fixed-size arrays.
//!
//! These `const fn`s read just the fields they need (`docs/FORMAT.md`: the section table, the
//! graph record, the ids and the tensor records). They check only what they read — evaluation
//! fails to compile on a file that is not a temper model — and trust the rest:
//! [`temper_runtime::Model::from_bytes`] validates the whole file at run time, and the session
//! re-checks the arena size and the input length against what it validated.

const HEADER_SIZE: usize = 72;
const SECTION_ENTRY: usize = 24;
const TENSOR_RECORD: usize = 88;
const GRAPH: u32 = 1;
const TENSORS: u32 = 2;
const IDS: u32 = 4;

const fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

const fn u64_at(b: &[u8], o: usize) -> u64 {
    u32_at(b, o) as u64 | (u32_at(b, o + 4) as u64) << 32
}

/// File offset of the section of `kind`.
const fn section(b: &[u8], kind: u32) -> usize {
    assert!(b.len() >= HEADER_SIZE, "model file shorter than the header");
    assert!(
        b[0] == b'T' && b[1] == b'E' && b[2] == b'M' && b[3] == b'P' && b[4] == b'E' && b[5] == b'R' && b[6] == b'M' && b[7] == b'F',
        "not a temper model file (bad magic)"
    );
    let count = u32_at(b, 28) as usize;
    let mut i = 0;
    while i < count {
        let e = HEADER_SIZE + i * SECTION_ENTRY;
        if u32_at(b, e) == kind {
            return u64_at(b, e + 8) as usize;
        }
        i += 1;
    }
    panic!("model file lacks a required section")
}

/// Arena bytes the model's memory plan needs.
pub const fn arena_size(b: &[u8]) -> usize {
    u64_at(b, section(b, GRAPH)) as usize
}

/// Element count of graph input `index`.
pub const fn input_len(b: &[u8], index: usize) -> usize {
    let g = section(b, GRAPH);
    let (inputs_off, n_inputs) = (u32_at(b, g + 16) as usize, u32_at(b, g + 20) as usize);
    assert!(index < n_inputs, "no graph input with this index");
    let id = u32_at(b, section(b, IDS) + 4 * (inputs_off + index)) as usize;
    let rec = section(b, TENSORS) + id * TENSOR_RECORD;
    let rank = u32_at(b, rec + 12) as usize;
    let mut n = 1usize;
    let mut d = 0;
    while d < rank {
        n *= u32_at(b, rec + 16 + 4 * d) as usize;
        d += 1;
    }
    n
}

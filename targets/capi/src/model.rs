//! `temper_model`: a validated model together with the storage of its bytes.

use crate::status::Error;
use temper_runtime::format::InputKind;
use temper_runtime::{LoadOptions, MappedModel, Model, TensorView};

/// 64 bytes at 64-byte alignment: the unit of the owned copy of a model.
#[repr(C, align(64))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Block([u8; 64]);

/// What keeps the model's bytes alive.
enum Storage {
    /// A 64-aligned heap copy (`temper_model_load_memory`). Never mutated or reallocated.
    Owned(#[allow(dead_code)] Vec<Block>),
    /// A private aligned copy of a file (`temper_model_load_path`; `ModelFile::open` copies, so
    /// the file may be replaced or truncated while the model is in use).
    Mapped(#[allow(dead_code)] MappedModel),
    /// The caller's bytes (`temper_model_load_memory_nocopy`): the caller keeps them alive.
    Borrowed,
}

/// The object behind a `temper_model *`: immutable after creation, so `Sync`.
pub struct TemperModel {
    /// The validated view. Its `'static` lifetime is a promise kept by this struct: the bytes
    /// live in `storage` (or, for [`Storage::Borrowed`], are kept alive by the caller) and are
    /// never moved, mutated or freed before the struct is dropped. The view is only handed out
    /// re-borrowed for the lifetime of `&self` (see [`TemperModel::model`]), except to sessions,
    /// whose C contract is to be freed before their model.
    model: Model<'static>,
    storage: Storage,
}

impl std::fmt::Debug for TemperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.storage {
            Storage::Owned(_) => "owned copy",
            Storage::Mapped(_) => "file copy",
            Storage::Borrowed => "caller's bytes",
        };
        write!(f, "TemperModel({:?}, {} bytes, {kind})", self.model.name(), self.model.bytes().len())
    }
}

/// Extend the lifetime of `bytes` to `'static`.
///
/// # Safety
/// The bytes must stay valid and unmodified for as long as any value derived from the result is
/// used (for `TemperModel`: until it is dropped, and sessions are freed before their model).
unsafe fn extend(bytes: &[u8]) -> &'static [u8] {
    // SAFETY: same pointer and length as a valid slice; the caller guarantees the memory
    // outlives every use of the returned reference and is not mutated meanwhile.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) }
}

impl TemperModel {
    /// Copy `bytes` into an owned 64-aligned buffer and validate it (checksums included).
    pub(crate) fn copy_from(bytes: &[u8]) -> Result<TemperModel, Error> {
        let mut blocks: Vec<Block> = Vec::new();
        blocks.try_reserve_exact(bytes.len().div_ceil(64)).map_err(|_| Error::OutOfMemory("the model copy"))?;
        blocks.resize(bytes.len().div_ceil(64), Block([0; 64]));
        bytemuck::cast_slice_mut::<Block, u8>(&mut blocks)[..bytes.len()].copy_from_slice(bytes);
        let view = &bytemuck::cast_slice::<Block, u8>(&blocks)[..bytes.len()];
        // SAFETY: `view` lies in the heap allocation of `blocks`, which moves into `storage`
        // below (moving a Vec does not move its heap buffer), is never mutated or resized again,
        // and is freed only when the TemperModel is dropped.
        let view = unsafe { extend(view) };
        let model = Model::from_bytes(view)?;
        Ok(TemperModel { model, storage: Storage::Owned(blocks) })
    }

    /// View the caller's bytes in place and validate them.
    ///
    /// # Safety
    /// `bytes` must stay valid and unmodified until the returned model is dropped.
    pub(crate) unsafe fn borrow(bytes: &[u8]) -> Result<TemperModel, Error> {
        // SAFETY: forwarded from this function's contract.
        let view = unsafe { extend(bytes) };
        let model = Model::from_bytes(view)?;
        Ok(TemperModel { model, storage: Storage::Borrowed })
    }

    /// Map and validate a file.
    pub(crate) fn open(path: &std::path::Path) -> Result<TemperModel, Error> {
        let file = MappedModel::open(path).map_err(Error::Open)?;
        // SAFETY: the mapping belongs to `file`, which moves into `storage` below (moving a
        // MappedModel does not move the mapped pages); it is read-only and private, and is
        // unmapped only when the TemperModel is dropped.
        let view = unsafe { extend(file.bytes()) };
        // `MappedModel::open` verified the checksums already; validate the structure of the
        // very bytes we keep a view of.
        let model = Model::from_bytes_with(view, LoadOptions { verify_checksums: false })
            .map_err(|e| Error::Open(temper_runtime::OpenError::Load(path.to_path_buf(), e)))?;
        Ok(TemperModel { model, storage: Storage::Mapped(file) })
    }

    /// The model, borrowed for as long as `self`.
    pub(crate) fn model(&self) -> &Model<'_> {
        &self.model
    }

    /// The model with the `'static` lifetime sessions need.
    ///
    /// # Safety
    /// The result must not be used after `self` is dropped.
    pub(crate) unsafe fn model_static(&self) -> &'static Model<'static> {
        let p: *const Model<'static> = &self.model;
        // SAFETY: `p` comes from a live reference; the caller guarantees `self` (and with it the
        // model and its bytes) outlives every use of the result.
        unsafe { &*p }
    }
}

// Compile-time proof of the documented thread-safety: a model may be shared by threads.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<TemperModel>();
};

/// `temper_tensor_info` (must match `temper.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TensorInfo {
    /// Name, not NUL-terminated.
    pub name: *const std::ffi::c_char,
    /// Name length in bytes.
    pub name_len: usize,
    /// `temper_dtype` code.
    pub dtype: u32,
    /// Rank.
    pub rank: u32,
    /// Dimensions, zero above `rank`.
    pub dims: [u32; temper_runtime::format::MAX_RANK],
    /// Element count.
    pub numel: usize,
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
    /// 1 if the input accepts raw u8 pixels.
    pub accepts_u8_pixels: u32,
}

impl TensorInfo {
    pub(crate) fn new(model: &Model<'_>, t: &TensorView<'_>, is_input: bool) -> TensorInfo {
        let mut dims = [0u32; temper_runtime::format::MAX_RANK];
        dims[..t.dims.len()].copy_from_slice(t.dims);
        let pixels = is_input && model.input_record(t.id).is_some_and(|r| r.kind == InputKind::Pixels as u32);
        TensorInfo {
            name: t.name.as_ptr().cast(),
            name_len: t.name.len(),
            dtype: t.dtype as u32,
            rank: t.dims.len() as u32,
            dims,
            numel: t.numel(),
            scale: t.scale,
            zero_point: t.zero_point,
            accepts_u8_pixels: pixels as u32,
        }
    }
}

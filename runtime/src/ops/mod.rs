//! The runtime's ops, one module each, and the one table that registers them.
//!
//! Each op module holds everything the runtime knows about that op:
//!
//! * its typed parameters (a struct implementing [`OpParams`]) and their encoding into the
//!   `[i32; 16]` `params` field of the `.tmf` op record (`docs/FORMAT.md`);
//! * `validate`: the load-time checks of one op record against the model (arity, input kinds,
//!   shapes against the parameters, clamp ranges, requantization values). After it passes,
//!   `run` may index without checks;
//! * `scratch`: the arena scratch bytes the op needs (the writer's planner reserves it, the
//!   loader checks the file reserves at least that much);
//! * `run`: the heap-free, infallible execution of a validated op;
//! * under the `writer` feature, the typed `writer::Builder` method that emits it.
//!
//! The `registry!` invocation at the end of this file turns one line per op into the
//! [`OpCode`] enum, its names, and the table of op definitions (`OpDef`: `validate`, `scratch`,
//! `run`) that the loader ([`crate::Model`]), the executor ([`crate::Session`]) and the
//! writer all dispatch through. Adding an op is a new module plus one line there
//! (`docs/ADDING_AN_OP.md`).

mod check;
mod exec;
pub mod window;

pub(crate) use check::Check;
pub(crate) use exec::{regions, Exec};

use crate::error::LoadError;
use crate::format::OP_PARAMS;

/// Typed parameters of an op and their encoding into the op record's `params` (unused slots 0).
///
/// `decode` is total: it never fails, whatever the integers. Whether they make sense is the
/// op's `validate`, run once at load; `run` decodes only records that passed it.
pub trait OpParams: Sized {
    /// The `params` field of the op record.
    fn encode(&self) -> [i32; OP_PARAMS];
    /// Read the parameters back from a `params` field.
    fn decode(p: &[i32; OP_PARAMS]) -> Self;
}

/// Parameters of an op that has none (every slot 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoParams;

impl OpParams for NoParams {
    fn encode(&self) -> [i32; OP_PARAMS] {
        [0; OP_PARAMS]
    }
    fn decode(_: &[i32; OP_PARAMS]) -> Self {
        NoParams
    }
}

/// What the runtime does with one op code: the entry of the registry.
#[derive(Clone, Copy)]
pub(crate) struct OpDef {
    /// Load-time checks of one op record (the common ones — op code, name, id lists, one arena
    /// output, scratch size — are done by the loader before and after).
    pub validate: fn(&Check<'_, '_>) -> Result<(), LoadError>,
    /// Scratch bytes the op needs, from its params and the dims of input 0 and the output
    /// (total: any integers give some size).
    pub scratch: fn(&[i32; OP_PARAMS], &[u32], &[u32]) -> usize,
    /// Execute a validated op: no heap, no failure path.
    pub run: fn(&mut Exec<'_, '_>),
}

/// Scratch function of ops that need none.
pub(crate) fn no_scratch(_: &[i32; OP_PARAMS], _: &[u32], _: &[u32]) -> usize {
    0
}

/// Declares every op once: `Variant = code => module`. Declares the module (the file
/// `ops/<module>.rs`), generates [`OpCode`] (its `ALL`, `from_code`, `name`) and the table
/// `OPS` indexed by `code − 1`, each entry the module's
/// `DEF`. Codes must be 1, 2, 3, … in order (checked at compile time).
macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal => $module:ident, )*) => {
        $( pub mod $module; )*

        /// Operation codes (the `code` field of an op record).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum OpCode {
            $( $(#[$doc])* $variant = $code, )*
        }

        /// Number of op codes.
        const COUNT: usize = [$(OpCode::$variant),*].len();

        impl OpCode {
            /// Every op code, in code order.
            pub const ALL: [OpCode; COUNT] = [$(OpCode::$variant),*];
            /// Decode a code.
            pub fn from_code(c: u32) -> Option<OpCode> {
                OpCode::ALL.get((c as usize).wrapping_sub(1)).copied()
            }
            /// Name for messages.
            pub const fn name(self) -> &'static str {
                match self {
                    $( OpCode::$variant => stringify!($variant), )*
                }
            }
            /// The registry entry.
            pub(crate) fn def(self) -> &'static OpDef {
                &OPS[self as usize - 1]
            }
        }

        /// The registry: one [`OpDef`] per op code, at index `code − 1`.
        static OPS: [OpDef; COUNT] = [$( $module::DEF ),*];

        const _: () = {
            let mut i = 0;
            while i < COUNT {
                assert!(OpCode::ALL[i] as usize == i + 1, "op codes must be 1, 2, 3, … in order");
                i += 1;
            }
        };
    };
}

registry! {
    /// Grouped 2-D convolution with packed weights.
    Conv2d = 1 => conv2d,
    /// Depthwise 2-D convolution.
    Depthwise2d = 2 => depthwise2d,
    /// Fully connected.
    FullyConnected = 3 => fully_connected,
    /// Elementwise add with broadcasting.
    Add = 4 => add,
    /// Elementwise multiply with broadcasting.
    Mul = 5 => mul,
    /// Max pooling.
    MaxPool = 6 => max_pool,
    /// Average pooling (global pooling is a full window).
    AvgPool = 7 => avg_pool,
    /// 256-entry lookup table (HardSwish, Sigmoid, Tanh, LeakyRelu, standalone clamps…).
    Lut = 8 => lut,
    /// Concatenation with per-input rescaling.
    Concat = 9 => concat,
    /// Reshape / Flatten (a copy; element order unchanged).
    Reshape = 10 => reshape,
    /// 4-D transpose.
    Transpose = 11 => transpose,
    /// Constant padding with the input zero point.
    Pad = 12 => pad,
    /// Spatial resize.
    Resize = 13 => resize,
    /// Transposed convolution.
    ConvTranspose2d = 14 => conv_transpose2d,
    /// Softmax over the last axis.
    Softmax = 15 => softmax,
    /// Per-channel affine map `x·a[c] + b[c]` (constant scale and offset per channel).
    ChannelAffine = 16 => channel_affine,
    /// Detection post-process of an anchor-free GFL/DFL head: int8 score threshold, top-k, DFL
    /// decode, NMS, fixed-size detection records.
    DetectPostprocess = 17 => detect_postprocess,
}

#[cfg(test)]
mod tests;

//! Scalar reference kernels: the specification every faster path must match bit for bit.
//!
//! They favour obviousness over speed. Each takes its inputs as slices already validated by the
//! model loader (lengths match shapes), and panics only on a violated precondition, which the
//! runtime rules out before calling.

pub mod channel_affine;
pub mod concat;
pub mod conv;
pub mod conv_transpose;
pub mod eltwise;
pub mod gemm;
pub mod lut;
pub mod pad;
pub mod pool;
pub mod quantize;
pub mod resize;
pub mod softmax;
pub mod transpose;

#[cfg(test)]
mod test_util;

pub use channel_affine::{channel_affine, ChannelAffineArgs};
pub use concat::{concat_one, Rescale};
pub use conv::{conv2d, depthwise2d};
pub use conv_transpose::{conv_transpose2d, ConvTransposeArgs};
pub use eltwise::{add, add_multipliers, mul, AddArgs, MulArgs};
pub use gemm::gemm;
pub use lut::{build_lut, lut};
pub use pad::pad;
pub use pool::{avg_pool, global_avg_pool, max_pool, AvgPoolArgs};
pub use quantize::{build_u8_lut, dequantize, map_u8, quantize_f32};
pub use resize::{resize_bilinear, resize_nearest};
#[cfg(feature = "std")]
pub use softmax::build_softmax_table;
pub use softmax::softmax;
pub use transpose::transpose4;

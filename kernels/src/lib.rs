//! temper INT8 kernels.
//!
//! [`reference`](mod@reference) holds the scalar reference kernels: they are the specification, and every
//! faster path (see [`dispatch`]) must produce exactly the same bytes. All kernels work on NHWC
//! int8 activations, int8 weights (symmetric, per output channel) and int32 accumulators, with
//! one integer requantization ([`requant`]) per output value.
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
pub mod aarch64;
pub mod dispatch;
pub mod driver;
pub mod features;
pub mod pack;
#[cfg(feature = "std")]
pub mod parallel;
pub mod params;
pub mod reference;
pub mod requant;
#[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")))]
pub(crate) mod rowconv;
pub mod split;
// The AVX-512 / AVX-VNNI intrinsics and target features were stabilized in Rust 1.89.
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use dispatch::Kernels;
pub use features::Features;
pub use params::*;

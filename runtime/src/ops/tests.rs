//! The registry and the params encodings: codes and slot positions are the `.tmf` v1 format.

use super::add::AddParams;
use super::avg_pool::AvgPoolParams;
use super::channel_affine::ChannelAffineParams;
use super::concat::ConcatParams;
use super::fully_connected::FcParams;
use super::max_pool::MaxPoolParams;
use super::mul::MulParams;
use super::pad::PadParams;
use super::resize::{ResizeMode, ResizeParams};
use super::transpose::TransposeParams;
use super::window::{ConvParams, Window};
use super::*;

#[test]
fn codes_are_dense_and_round_trip() {
    for (i, &c) in OpCode::ALL.iter().enumerate() {
        assert_eq!(c as usize, i + 1);
        assert_eq!(OpCode::from_code(c as u32), Some(c));
        assert!(core::ptr::eq(c.def(), &OPS[i]));
    }
    assert_eq!(OpCode::from_code(0), None);
    assert_eq!(OpCode::from_code(OpCode::ALL.len() as u32 + 1), None);
    assert_eq!(OpCode::from_code(u32::MAX), None);
    assert_eq!(OpCode::Softmax as u32, 15);
    assert_eq!(OpCode::ConvTranspose2d.name(), "ConvTranspose2d");
}

/// `encode` puts each field in its documented slot, and `decode` reads it back.
fn slots<P: OpParams + PartialEq + core::fmt::Debug>(p: P, want: &[i32]) {
    let e = p.encode();
    assert_eq!(&e[..want.len()], want);
    assert!(e[want.len()..].iter().all(|&v| v == 0), "unused slots are 0: {e:?}");
    assert_eq!(P::decode(&e), p);
}

#[test]
fn params_sit_in_their_format_slots() {
    let window = Window { kernel: [3, 5], stride: [2, 1], dilation: [1, 2], pads: [1, 2, 3, 4] };
    slots(ConvParams { window, groups: 4, clamp: (-128, 90) }, &[3, 5, 2, 1, 1, 2, 1, 2, 3, 4, 4, -128, 90]);
    slots(FcParams { clamp: (-5, 100) }, &[-5, 100]);
    slots(AddParams { a_mult: 1 << 20, b_mult: 3 << 19, shift: 21, clamp: (-128, 127) }, &[1 << 20, 3 << 19, 21, -128, 127]);
    slots(MulParams { mult: 1 << 30, shift: 40, clamp: (0, 127) }, &[1 << 30, 40, 0, 127]);
    let pool = Window { kernel: [2, 3], stride: [2, 2], dilation: [1, 1], pads: [0, 1, 1, 0] };
    slots(MaxPoolParams { window: pool, clamp: (-100, 127) }, &[2, 3, 2, 2, 1, 1, 0, 1, 1, 0, -100, 127]);
    let avg = AvgPoolParams { window: pool, count_include_pad: true, mult: 1 << 30, shift: 33, clamp: (-128, 127) };
    slots(avg, &[2, 3, 2, 2, 0, 1, 1, 0, 1, 1 << 30, 33, -128, 127]);
    slots(ConcatParams { axis: 3 }, &[3]);
    slots(TransposeParams { perm: [0, 3, 1, 2] }, &[0, 3, 1, 2]);
    slots(PadParams { begin: [0, 1, 2, 0], end: [0, 3, 4, 0] }, &[0, 1, 2, 0, 0, 3, 4, 0]);
    slots(ResizeParams { mode: ResizeMode::BilinearAlignCorners }, &[2]);
    slots(ChannelAffineParams { clamp: (-7, 120) }, &[-7, 120]);
    slots(NoParams, &[]);
}

#[test]
fn decode_is_total() {
    let junk = [i32::MIN, -1, 7, i32::MAX, 4, -3, 0, 9, 1 << 30, -128, 255, 3, 2, 1, 0, -7];
    let _ = ConvParams::decode(&junk);
    let _ = AvgPoolParams::decode(&junk);
    let _ = MaxPoolParams::decode(&junk);
    assert_eq!(ConcatParams::decode(&junk).axis, 0);
    assert_eq!(TransposeParams::decode(&junk).perm, [0, 0, 3, 3]);
    assert_eq!(ResizeParams::decode(&junk).mode, ResizeMode::Bilinear);
    for c in OpCode::ALL {
        let _ = (c.def().scratch)(&junk, &[1, 2, 3], &[u32::MAX; 4]);
    }
}

#[test]
fn the_format_document_lists_every_op() {
    let doc = include_str!("../../../docs/FORMAT.md");
    for c in OpCode::ALL {
        let row = alloc::format!("| {} | {} |", c as u32, c.name());
        assert!(doc.contains(&row), "docs/FORMAT.md has no op table row starting {row:?}");
    }
}

//! Detection pre-processing recorded as data: letterbox or plain resize to a target size, the box
//! transform it implies and its inverse.
//!
//! A [`Geometry`] is a small value (`letterbox:320x320:pad=114` or `resize:320x320` as text) that
//! the converter can store with a model so the device pre-processes exactly the same way: for a
//! source image of `w × h` the transform ([`Geometry::transform`]) is a function of these numbers
//! alone.
//!
//! * `resize` stretches to `W × H`: `x' = x · W/w`, `y' = y · H/h`.
//! * `letterbox` keeps the aspect: `r = min(W/w, H/h)`, the image is resized to
//!   `nw = round(w·r)` × `nh = round(h·r)` (at least 1) and placed at
//!   `left = (W - nw) / 2`, `top = (H - nh) / 2` (integer division) on a canvas filled with the
//!   pad value; `x' = x · nw/w + left`, `y' = y · nh/h + top`.

use crate::error::DataError;
use crate::images::Image;

/// How images are brought to the model's input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// Stretch to the target size (aspect not kept).
    Stretch,
    /// Keep the aspect ratio and pad with `pad` (every channel).
    Letterbox {
        /// The pad value, 0..=255 (YOLO uses 114).
        pad: u8,
    },
}

/// Target size and resize mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Target height.
    pub height: usize,
    /// Target width.
    pub width: usize,
    /// Resize mode.
    pub mode: ResizeMode,
}

/// The affine box transform for one source size: `x' = x · sx + dx`, `y' = y · sy + dy`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxTransform {
    /// Horizontal scale.
    pub sx: f64,
    /// Vertical scale.
    pub sy: f64,
    /// Horizontal offset (left padding) in target pixels.
    pub dx: f64,
    /// Vertical offset (top padding) in target pixels.
    pub dy: f64,
    /// Width of the resized image content (without padding).
    pub content_w: usize,
    /// Height of the resized image content.
    pub content_h: usize,
}

impl BoxTransform {
    /// Maps an `[x1, y1, x2, y2]` box from the source image to the model input.
    pub fn apply(&self, b: [f32; 4]) -> [f32; 4] {
        let (sx, sy, dx, dy) = (self.sx, self.sy, self.dx, self.dy);
        [(b[0] as f64 * sx + dx) as f32, (b[1] as f64 * sy + dy) as f32, (b[2] as f64 * sx + dx) as f32, (b[3] as f64 * sy + dy) as f32]
    }

    /// Maps a box on the model input back to the source image (the inverse of [`apply`](Self::apply)).
    pub fn invert(&self, b: [f32; 4]) -> [f32; 4] {
        let (sx, sy, dx, dy) = (self.sx, self.sy, self.dx, self.dy);
        [
            ((b[0] as f64 - dx) / sx) as f32,
            ((b[1] as f64 - dy) / sy) as f32,
            ((b[2] as f64 - dx) / sx) as f32,
            ((b[3] as f64 - dy) / sy) as f32,
        ]
    }
}

impl Geometry {
    /// Parses `resize:HxW` or `letterbox:HxW[:pad=N]` (pad defaults to 114).
    pub fn parse(spec: &str) -> Result<Geometry, DataError> {
        let bad = |m: &str| DataError::spec(spec, format!("{m} (expected resize:HxW or letterbox:HxW[:pad=N])"));
        let mut parts = spec.split(':');
        let kind = parts.next().unwrap_or("");
        let size = parts.next().ok_or_else(|| bad("no size"))?;
        let (h, w) = size.split_once(['x', 'X']).ok_or_else(|| bad("size is not HxW"))?;
        let height: usize = h.trim().parse().map_err(|_| bad("height is not a number"))?;
        let width: usize = w.trim().parse().map_err(|_| bad("width is not a number"))?;
        if height == 0 || width == 0 || height > 16384 || width > 16384 {
            return Err(bad("size must be 1..=16384 on each side"));
        }
        let mode = match kind {
            "resize" => ResizeMode::Stretch,
            "letterbox" => {
                let mut pad = 114u8;
                if let Some(p) = parts.next() {
                    let v = p.strip_prefix("pad=").ok_or_else(|| bad("unknown option"))?;
                    pad = v.parse().map_err(|_| bad("pad must be 0..=255"))?;
                }
                ResizeMode::Letterbox { pad }
            }
            _ => return Err(bad("unknown mode")),
        };
        if parts.next().is_some() {
            return Err(bad("trailing fields"));
        }
        Ok(Geometry { height, width, mode })
    }

    /// The spec string [`parse`](Self::parse) reads back.
    pub fn spec(&self) -> String {
        match self.mode {
            ResizeMode::Stretch => format!("resize:{}x{}", self.height, self.width),
            ResizeMode::Letterbox { pad } => format!("letterbox:{}x{}:pad={pad}", self.height, self.width),
        }
    }

    /// The box transform for a `src_w × src_h` image (both > 0).
    pub fn transform(&self, src_w: usize, src_h: usize) -> BoxTransform {
        let (w, h) = (src_w.max(1) as f64, src_h.max(1) as f64);
        match self.mode {
            ResizeMode::Stretch => BoxTransform {
                sx: self.width as f64 / w,
                sy: self.height as f64 / h,
                dx: 0.0,
                dy: 0.0,
                content_w: self.width,
                content_h: self.height,
            },
            ResizeMode::Letterbox { .. } => {
                let r = (self.width as f64 / w).min(self.height as f64 / h);
                let nw = ((w * r).round() as usize).clamp(1, self.width);
                let nh = ((h * r).round() as usize).clamp(1, self.height);
                let left = (self.width - nw) / 2;
                let top = (self.height - nh) / 2;
                BoxTransform { sx: nw as f64 / w, sy: nh as f64 / h, dx: left as f64, dy: top as f64, content_w: nw, content_h: nh }
            }
        }
    }

    /// Resizes (and pads) `img` to the target size; returns the new image and its box transform.
    pub fn apply(&self, img: &Image) -> Result<(Image, BoxTransform), DataError> {
        let t = self.transform(img.width, img.height);
        let content =
            if (t.content_h, t.content_w) == (img.height, img.width) { img.clone() } else { img.resize(t.content_h, t.content_w)? };
        let out = match self.mode {
            ResizeMode::Stretch => content,
            ResizeMode::Letterbox { pad } => {
                let c = img.channels;
                let mut data = vec![pad; self.height * self.width * c];
                let (left, top) = (t.dx as usize, t.dy as usize);
                for y in 0..t.content_h {
                    let dst = ((top + y) * self.width + left) * c;
                    let src = y * t.content_w * c;
                    data[dst..dst + t.content_w * c].copy_from_slice(&content.data[src..src + t.content_w * c]);
                }
                Image { width: self.width, height: self.height, channels: c, data }
            }
        };
        Ok((out, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_offsets_and_inverse() {
        let g = Geometry::parse("letterbox:320x320").unwrap();
        // 640x480 -> r = 0.5, content 320x240, top pad 40
        let t = g.transform(640, 480);
        assert_eq!((t.content_w, t.content_h, t.dx, t.dy), (320, 240, 0.0, 40.0));
        let b = [100.0, 50.0, 300.0, 450.0];
        let m = t.apply(b);
        assert_eq!(m, [50.0, 65.0, 150.0, 265.0]);
        assert_eq!(t.invert(m), b);
        assert_eq!(g.spec(), "letterbox:320x320:pad=114");
        assert_eq!(Geometry::parse(&g.spec()).unwrap(), g);
    }

    #[test]
    fn stretch_scales_each_axis() {
        let g = Geometry::parse("resize:100x200").unwrap();
        let t = g.transform(400, 50);
        assert_eq!((t.sx, t.sy, t.dx, t.dy), (0.5, 2.0, 0.0, 0.0));
        assert_eq!(t.apply([0.0, 0.0, 400.0, 50.0]), [0.0, 0.0, 200.0, 100.0]);
    }

    #[test]
    fn letterbox_pads_with_the_pad_value() {
        let img = Image::new(4, 2, 1, vec![10; 8]).unwrap();
        let (out, t) = Geometry::parse("letterbox:4x4:pad=7").unwrap().apply(&img).unwrap();
        assert_eq!((t.dx, t.dy), (0.0, 1.0));
        assert_eq!(out.data, [7, 7, 7, 7, 10, 10, 10, 10, 10, 10, 10, 10, 7, 7, 7, 7]);
    }

    #[test]
    fn bad_specs_are_errors() {
        for s in ["", "letterbox", "resize:0x3", "resize:3", "letterbox:3x3:pad=300", "crop:3x3", "resize:3x3:pad=1", "letterbox:3x3:x=1"] {
            let e = Geometry::parse(s);
            assert!(e.is_err(), "{s} parsed");
        }
    }
}

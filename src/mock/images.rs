//! The fake model's pictures: a landscape-like scene (sky gradient, a soft sun, rolling hills,
//! a few translucent bubbles) whose colours and shapes derive from a hash of prompt, seed and
//! image index, encoded as PNG, JPEG or lossless WebP. Deterministic: the same key always gives
//! the same bytes, so an evicted image can be rendered again.

/// An output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PNG (fast compression).
    Png,
    /// Baseline JPEG, quality 90.
    Jpeg,
    /// Lossless WebP.
    Webp,
}

impl Format {
    /// The format named by fal's `output_format` value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "png" => Some(Self::Png),
            "jpeg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }

    /// File extension (also fal's `output_format` value).
    pub fn ext(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Webp => "webp",
        }
    }

    /// MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }
}

/// Width and height for an `aspect_ratio` (`auto` = 1:1) and a `resolution` (`1K`/`2K`/`4K` =
/// long side 1024/2048/4096; the short side follows the ratio, rounded to a multiple of 8).
pub fn dimensions(aspect: &str, resolution: &str) -> Option<(u32, u32)> {
    let long: u32 = match resolution {
        "1K" => 1024,
        "2K" => 2048,
        "4K" => 4096,
        _ => return None,
    };
    let (a, b) = match aspect {
        "auto" => (1, 1),
        other => {
            let (a, b) = other.split_once(':')?;
            (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)
        }
    };
    if a == 0 || b == 0 {
        return None;
    }
    let short = |num: u32, den: u32| {
        let exact = f64::from(long) * f64::from(num) / f64::from(den);
        (((exact / 8.0).round() as u32) * 8).clamp(8, long)
    };
    Some(if a >= b {
        (long, short(b, a))
    } else {
        (short(a, b), long)
    })
}

/// A stable 64-bit hash (FNV-1a) of the prompt, seed and image index.
pub fn image_key(prompt: &str, seed: u64, index: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = prompt
        .bytes()
        .chain(seed.to_le_bytes())
        .chain(index.to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Renders and encodes one picture.
pub fn render(width: u32, height: u32, format: Format, key: u64) -> Result<Vec<u8>, String> {
    let pixels = paint(width, height, key);
    let mut out = Vec::new();
    match format {
        Format::Png => {
            let mut encoder = png::Encoder::new(&mut out, width, height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.set_compression(png::Compression::Fast);
            let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
            writer
                .write_image_data(&pixels)
                .map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
        }
        Format::Jpeg => {
            let w = u16::try_from(width).map_err(|e| e.to_string())?;
            let h = u16::try_from(height).map_err(|e| e.to_string())?;
            jpeg_encoder::Encoder::new(&mut out, 90)
                .encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| e.to_string())?;
        }
        Format::Webp => {
            image_webp::WebPEncoder::new(&mut out)
                .encode(&pixels, width, height, image_webp::ColorType::Rgb8)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// A small deterministic generator (splitmix64) for the scene's parameters.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

type Rgb = [f32; 3];

/// HSV (hue in turns) to RGB in 0..=255.
fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h = h.rem_euclid(1.0) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

/// `a` moved towards `b` by `t` (0..=1).
fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn blend(dst: &mut [f32], color: Rgb, alpha: f32) {
    for (d, c) in dst.iter_mut().zip(color) {
        *d += (c - *d) * alpha;
    }
}

struct Disc {
    cx: f32,
    cy: f32,
    r: f32,
    color: Rgb,
    alpha: f32,
}

struct Hill {
    heights: Vec<f32>,
    top: Rgb,
    bottom: Rgb,
}

/// Paints the scene as packed 8-bit RGB rows.
fn paint(width: u32, height: u32, key: u64) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let (wf, hf) = (width as f32, height as f32);
    let unit = wf.min(hf);
    let mut dice = Dice(key);
    let hue = dice.range(0.0, 1.0);
    let sky_top = hsv(hue, dice.range(0.5, 0.8), dice.range(0.25, 0.45));
    let sky_bottom = hsv(hue + dice.range(0.08, 0.25), dice.range(0.3, 0.6), 0.95);
    let sun = Disc {
        cx: wf * dice.range(0.2, 0.8),
        cy: hf * dice.range(0.18, 0.45),
        r: unit * dice.range(0.08, 0.16),
        color: hsv(hue + dice.range(0.4, 0.6), 0.25, 1.0),
        alpha: 1.0,
    };
    let hills: Vec<Hill> = (0..3)
        .map(|layer| {
            let base = hf * (0.52 + 0.14 * layer as f32);
            let (amp, freq, phase) = (
                hf * dice.range(0.03, 0.08),
                dice.range(1.0, 3.5),
                dice.range(0.0, 6.3),
            );
            let heights = (0..w)
                .map(|x| {
                    let t = x as f32 / wf * std::f32::consts::TAU;
                    base + amp * (t * freq + phase).sin() + amp * 0.3 * (t * freq * 2.7).cos()
                })
                .collect();
            let shade = 0.75 - 0.2 * layer as f32;
            let tone = hue + 0.3 + dice.range(-0.08, 0.08);
            Hill {
                heights,
                top: hsv(tone, 0.55, shade),
                bottom: hsv(tone, 0.7, shade * 0.6),
            }
        })
        .collect();
    let bubbles: Vec<Disc> = (0..5)
        .map(|_| Disc {
            cx: wf * dice.range(0.0, 1.0),
            cy: hf * dice.range(0.0, 1.0),
            r: unit * dice.range(0.03, 0.1),
            color: hsv(hue + dice.range(0.0, 1.0), 0.35, 1.0),
            alpha: 0.3,
        })
        .collect();

    let edge = (unit / 400.0).max(1.0);
    let mut out = Vec::with_capacity(w * h * 3);
    let mut row = vec![0.0f32; w * 3];
    for y in 0..h {
        let yf = y as f32 + 0.5;
        for x in 0..w {
            let t = (yf / hf * 0.85 + x as f32 / wf * 0.15).min(1.0);
            row[x * 3..x * 3 + 3].copy_from_slice(&mix(sky_top, sky_bottom, t));
        }
        draw_disc(&mut row, &sun, yf, w, edge);
        for hill in &hills {
            for x in 0..w {
                let depth = yf - hill.heights[x];
                if depth > -0.5 {
                    let t = (depth / (hf - hill.heights[x]).max(1.0)).clamp(0.0, 1.0);
                    let color = mix(hill.top, hill.bottom, t);
                    blend(&mut row[x * 3..x * 3 + 3], color, (depth + 0.5).min(1.0));
                }
            }
        }
        for bubble in &bubbles {
            draw_disc(&mut row, bubble, yf, w, edge);
        }
        out.extend(row.iter().map(|v| v.clamp(0.0, 255.0) as u8));
    }
    out
}

/// Blends the part of `disc` that crosses row `yf`, with an anti-aliased rim `edge` wide.
fn draw_disc(row: &mut [f32], disc: &Disc, yf: f32, w: usize, edge: f32) {
    let reach = disc.r + edge;
    let dy = yf - disc.cy;
    if dy.abs() >= reach {
        return;
    }
    let half = (reach * reach - dy * dy).sqrt();
    let from = (disc.cx - half).floor().max(0.0) as usize;
    let to = ((disc.cx + half).ceil().max(0.0) as usize).min(w);
    for x in from..to {
        let dx = x as f32 + 0.5 - disc.cx;
        let d = (dx * dx + dy * dy).sqrt();
        let cover = ((disc.r + edge - d) / edge).clamp(0.0, 1.0);
        if cover > 0.0 {
            blend(&mut row[x * 3..x * 3 + 3], disc.color, cover * disc.alpha);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Width and height from a JPEG's SOF0 segment.
    fn jpeg_size(b: &[u8]) -> (u32, u32) {
        assert_eq!(&b[..2], &[0xff, 0xd8], "SOI");
        let mut i = 2;
        loop {
            assert_eq!(b[i], 0xff);
            let marker = b[i + 1];
            let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
            if (0xc0..=0xc2).contains(&marker) {
                let h = u16::from_be_bytes([b[i + 5], b[i + 6]]);
                let w = u16::from_be_bytes([b[i + 7], b[i + 8]]);
                return (u32::from(w), u32::from(h));
            }
            i += 2 + len;
        }
    }

    #[test]
    fn dimensions_follow_ratio_and_resolution() {
        assert_eq!(dimensions("auto", "1K"), Some((1024, 1024)));
        assert_eq!(dimensions("16:9", "1K"), Some((1024, 576)));
        assert_eq!(dimensions("9:16", "2K"), Some((1152, 2048)));
        assert_eq!(dimensions("21:9", "1K"), Some((1024, 440)));
        assert_eq!(dimensions("4:5", "4K"), Some((3280, 4096)));
        assert_eq!(dimensions("3:2", "4K"), Some((4096, 2728)));
        assert_eq!(dimensions("1:1", "8K"), None);
        assert_eq!(dimensions("0:1", "1K"), None);
    }

    #[test]
    fn png_has_the_right_size_and_is_deterministic() {
        let (w, h) = dimensions("16:9", "1K").unwrap();
        let bytes = render(w, h, Format::Png, 42).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        assert_eq!((be32(&bytes[16..]), be32(&bytes[20..])), (1024, 576));
        assert_eq!(render(w, h, Format::Png, 42).unwrap(), bytes);
        assert_ne!(render(w, h, Format::Png, 43).unwrap(), bytes);
        // Decodable: the png crate reads it back with the same geometry.
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (1024, 576));
    }

    #[test]
    fn jpeg_has_the_right_size() {
        let (w, h) = dimensions("9:16", "2K").unwrap();
        let bytes = render(w, h, Format::Jpeg, 7).unwrap();
        assert_eq!(jpeg_size(&bytes), (1152, 2048));
        assert_eq!(&bytes[bytes.len() - 2..], &[0xff, 0xd9], "EOI");
    }

    #[test]
    fn webp_has_a_riff_header_and_decodes() {
        let (w, h) = dimensions("21:9", "1K").unwrap();
        let bytes = render(w, h, Format::Webp, 9).unwrap();
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..16], b"WEBPVP8L");
        let riff_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        assert_eq!(riff_len as usize + 8, bytes.len());
        let decoder = image_webp::WebPDecoder::new(std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(decoder.dimensions(), (1024, 440));
    }

    #[test]
    fn keys_differ_by_prompt_seed_and_index() {
        let k = image_key("a cat", 1, 0);
        assert_eq!(k, image_key("a cat", 1, 0));
        assert_ne!(k, image_key("a dog", 1, 0));
        assert_ne!(k, image_key("a cat", 2, 0));
        assert_ne!(k, image_key("a cat", 1, 1));
    }
}

//! Thumbnails, as PocketBase makes them for `?thumb=WxH`: the first frame
//! of a PNG, JPEG, GIF or WebP image, cropped or fitted to the size, written
//! once to storage beside the original (`<collectionId>/<recordId>/
//! thumbs_<name>/<size>_<name>`, see [`key`]) and served from there after.
//! The format follows the source as PocketBase's: JPEG stays JPEG, GIF
//! stays GIF, PNG and WebP become PNG.
//!
//! Uploaded images are attacker input. A few kilobytes of PNG can declare
//! 50000 x 50000 pixels (10 GB decoded), so the size is read from the
//! header and checked ([`MAX_SOURCE_PIXELS`], [`MAX_SOURCE_SIDE`],
//! [`MAX_DECODED_BYTES`]) before a pixel is decoded, and the decoders run
//! with `image::Limits` as a second line. Decoding and resizing run on the
//! blocking pool, at most one per core at a time ([`Thumbnails`]), and
//! concurrent first requests for the same thumbnail make it once. Anything
//! that fails (too large, corrupt, busy for too long) is an error the
//! caller answers with the original file, as PocketBase does.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Seek, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::{upload::SpoolFile, Body, ObjectMeta, Storage};

/// Largest source image, in pixels (40 megapixels: the photos of current
/// phone cameras fit; decoded as RGBA that is 160 MB).
pub const MAX_SOURCE_PIXELS: u64 = 40_000_000;
/// Largest source side, in pixels.
pub const MAX_SOURCE_SIDE: u32 = 32_768;
/// Largest decoded image, in bytes (16-bit channels count double).
pub const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;
/// Largest thumbnail, in pixels: a zero side follows the source's aspect
/// ratio, so `0x4096` of a 30000 x 10 strip would otherwise be huge.
pub const MAX_OUTPUT_PIXELS: u64 = 4096 * 4096;
/// How long a request waits for a free slot before it gets the original.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// JPEG thumbnails' quality (PocketBase's encoder default).
const JPEG_QUALITY: u8 = 95;

/// How a thumbnail fills its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Cover the box, cropping the overflow evenly (`WxH`).
    Center,
    /// Cover the box, keeping the top (`WxHt`).
    Top,
    /// Cover the box, keeping the bottom (`WxHb`).
    Bottom,
    /// Fit inside the box, keeping the aspect ratio; never enlarged (`WxHf`).
    Inside,
}

/// A thumbnail size. A zero side follows the other side and the source's
/// aspect ratio (the fit is then irrelevant); both zero is no size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
    pub fit: Fit,
}

/// Why no thumbnail was made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("not a PNG, JPEG, GIF or WebP image")]
    Unsupported,
    #[error("image too large for a thumbnail: {0}")]
    TooLarge(String),
    #[error("image could not be decoded: {0}")]
    Decode(String),
    #[error("the original file is missing")]
    Missing,
    #[error("no thumbnail slot became free in time")]
    Busy,
    #[error("storage: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Shared(Arc<str>),
}

/// A thumbnail's key: `<collectionId>/<recordId>/thumbs_<name>/<size>_<name>`
/// (`size` as the client wrote it, e.g. `100x100t`), as PocketBase lays them out.
pub fn key(collection_id: &str, record_id: &str, name: &str, size: &str) -> String {
    format!("{collection_id}/{record_id}/thumbs_{name}/{size}_{name}")
}

/// The prefix holding every thumbnail of one file (removed with the file).
pub fn prefix(collection_id: &str, record_id: &str, name: &str) -> String {
    format!("{collection_id}/{record_id}/thumbs_{name}/")
}

/// A rendered thumbnail.
#[derive(Debug)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub mime: &'static str,
}

/// A region of the source, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

/// What to do with a `src_w` x `src_h` source: the region to keep and the
/// output size it is resized to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    region: Region,
    out_w: u32,
    out_h: u32,
}

/// `a * b / c`, rounded, at least 1.
fn scaled(a: u32, b: u32, c: u32) -> u64 {
    ((u64::from(a) * u64::from(b) + u64::from(c) / 2) / u64::from(c).max(1)).max(1)
}

fn plan(src_w: u32, src_h: u32, size: Size) -> Result<Plan, ThumbError> {
    let whole = Region {
        x: 0,
        y: 0,
        w: src_w,
        h: src_h,
    };
    let (w, h) = (size.width, size.height);
    let (region, out_w, out_h) = if w == 0 || h == 0 {
        if w == 0 && h == 0 {
            return Err(ThumbError::Unsupported);
        }
        let (ow, oh) = if w == 0 {
            (scaled(src_w, h, src_h), u64::from(h))
        } else {
            (u64::from(w), scaled(src_h, w, src_w))
        };
        (whole, ow, oh)
    } else if size.fit == Fit::Inside {
        if src_w <= w && src_h <= h {
            (whole, u64::from(src_w), u64::from(src_h))
        } else if u64::from(src_w) * u64::from(h) > u64::from(src_h) * u64::from(w) {
            (whole, u64::from(w), scaled(src_h, w, src_w))
        } else {
            (whole, scaled(src_w, h, src_h), u64::from(h))
        }
    } else {
        // Cover: keep the largest region of the box's aspect ratio, then
        // scale it to the box (cropping first keeps memory at the source's).
        let region = if u64::from(src_w) * u64::from(h) > u64::from(src_h) * u64::from(w) {
            let cw = scaled(src_h, w, h).min(u64::from(src_w)) as u32;
            Region {
                x: (src_w - cw) / 2,
                y: 0,
                w: cw,
                h: src_h,
            }
        } else {
            let ch = scaled(src_w, h, w).min(u64::from(src_h)) as u32;
            let y = match size.fit {
                Fit::Top => 0,
                Fit::Bottom => src_h - ch,
                Fit::Center | Fit::Inside => (src_h - ch) / 2,
            };
            Region {
                x: 0,
                y,
                w: src_w,
                h: ch,
            }
        };
        (region, u64::from(w), u64::from(h))
    };
    if out_w.saturating_mul(out_h) > MAX_OUTPUT_PIXELS {
        return Err(ThumbError::TooLarge(format!("a {out_w}x{out_h} thumbnail")));
    }
    Ok(Plan {
        region,
        out_w: out_w as u32,
        out_h: out_h as u32,
    })
}

/// The decoder limits: the same bounds the header check applies, so a
/// decoder that reads more than its header promised still stops.
fn limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_SOURCE_SIDE);
    l.max_image_height = Some(MAX_SOURCE_SIDE);
    l.max_alloc = Some(MAX_DECODED_BYTES);
    l
}

fn decode_error(e: image::ImageError) -> ThumbError {
    match e {
        image::ImageError::Limits(l) => ThumbError::TooLarge(l.to_string()),
        image::ImageError::IoError(e) => ThumbError::Io(e),
        image::ImageError::Unsupported(_) => ThumbError::Unsupported,
        e => ThumbError::Decode(e.to_string()),
    }
}

/// Decodes `src` (its first frame), checking its declared size first.
fn decode(src: impl BufRead + Seek) -> Result<(DynamicImage, ImageFormat), ThumbError> {
    let mut reader = ImageReader::new(src).with_guessed_format()?;
    let format = reader.format().ok_or(ThumbError::Unsupported)?;
    if ![ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif, ImageFormat::WebP].contains(&format) {
        return Err(ThumbError::Unsupported);
    }
    reader.limits(limits());
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(ThumbError::Decode("an image without pixels".into()));
    }
    if w > MAX_SOURCE_SIDE || h > MAX_SOURCE_SIDE || u64::from(w) * u64::from(h) > MAX_SOURCE_PIXELS {
        return Err(ThumbError::TooLarge(format!("{w}x{h} pixels")));
    }
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(ThumbError::TooLarge(format!("{} bytes decoded", decoder.total_bytes())));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    img.apply_orientation(orientation);
    Ok((img, format))
}

/// Crops `img` to `r` and resizes it to `w` x `h` with a triangle
/// (bilinear) filter. 8-bit images (nearly every upload) go through
/// `fast_image_resize`, which crops without a copy and resizes with SIMD:
/// measured 3-5x faster than `image`'s own resize on 300 x 300 -> 100 x 100,
/// most of a first thumbnail's CPU time. Other pixel types keep `image`'s.
fn crop_resize(img: &DynamicImage, r: Region, w: u32, h: u32) -> DynamicImage {
    if let Some(out) = fast_resize(img, r, w, h) {
        return out;
    }
    macro_rules! go {
        ($buf:expr) => {
            imageops::resize(
                &*imageops::crop_imm($buf, r.x, r.y, r.w, r.h),
                w,
                h,
                FilterType::Triangle,
            )
            .into()
        };
    }
    match img {
        DynamicImage::ImageLuma16(b) => go!(b),
        DynamicImage::ImageLumaA16(b) => go!(b),
        DynamicImage::ImageRgb16(b) => go!(b),
        DynamicImage::ImageRgba16(b) => go!(b),
        other => go!(&other.to_rgba8()),
    }
}

/// [`crop_resize`] for 8-bit images (`None` for other pixel types). Alpha
/// is premultiplied while resizing (the crate's default), so transparent
/// pixels do not bleed their colour into the edges.
fn fast_resize(img: &DynamicImage, r: Region, w: u32, h: u32) -> Option<DynamicImage> {
    use fast_image_resize::{
        images::{Image, ImageRef},
        FilterType as F, PixelType, ResizeAlg, ResizeOptions, Resizer,
    };
    let kind = match img {
        DynamicImage::ImageLuma8(_) => PixelType::U8,
        DynamicImage::ImageLumaA8(_) => PixelType::U8x2,
        DynamicImage::ImageRgb8(_) => PixelType::U8x3,
        DynamicImage::ImageRgba8(_) => PixelType::U8x4,
        _ => return None,
    };
    let src = ImageRef::new(img.width(), img.height(), img.as_bytes(), kind).ok()?;
    let mut dst = Image::new(w, h, kind);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(F::Bilinear))
        .crop(f64::from(r.x), f64::from(r.y), f64::from(r.w), f64::from(r.h));
    Resizer::new().resize(&src, &mut dst, &options).ok()?;
    let bytes = dst.into_vec();
    Some(match img {
        DynamicImage::ImageLuma8(_) => image::GrayImage::from_raw(w, h, bytes)?.into(),
        DynamicImage::ImageLumaA8(_) => image::GrayAlphaImage::from_raw(w, h, bytes)?.into(),
        DynamicImage::ImageRgb8(_) => image::RgbImage::from_raw(w, h, bytes)?.into(),
        _ => image::RgbaImage::from_raw(w, h, bytes)?.into(),
    })
}

fn encode(img: DynamicImage, source: ImageFormat) -> Result<Rendered, ThumbError> {
    let mut out = Vec::new();
    let enc = |e: image::ImageError| ThumbError::Decode(format!("encoding the thumbnail: {e}"));
    let mime = match source {
        ImageFormat::Jpeg => {
            let img = match img {
                DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => img,
                other => DynamicImage::ImageRgb8(other.to_rgb8()),
            };
            img.write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))
                .map_err(enc)?;
            "image/jpeg"
        }
        ImageFormat::Gif => {
            let mut encoder = GifEncoder::new_with_speed(&mut out, 10);
            encoder.encode_frame(image::Frame::new(img.to_rgba8())).map_err(enc)?;
            drop(encoder);
            "image/gif"
        }
        _ => {
            let img = match img {
                DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
                    DynamicImage::ImageRgba8(img.to_rgba8())
                }
                img => img,
            };
            // The fast level (fdeflate, made for filtered PNG rows): on a
            // photo's 100 x 100 thumbnail it was as small as the default
            // level's (13,944 vs 13,942 bytes) at a fortieth of the time.
            let png = PngEncoder::new_with_quality(&mut out, CompressionType::Fast, PngFilter::Adaptive);
            img.write_with_encoder(png).map_err(enc)?;
            "image/png"
        }
    };
    Ok(Rendered { bytes: out, mime })
}

/// Makes a thumbnail of the image in `src`. CPU-heavy: call it on the
/// blocking pool (see [`Thumbnails::ensure`]).
pub fn render(src: impl BufRead + Seek, size: Size) -> Result<Rendered, ThumbError> {
    let (img, format) = decode(src)?;
    let p = plan(img.width(), img.height(), size)?;
    let whole = p.region
        == Region {
            x: 0,
            y: 0,
            w: img.width(),
            h: img.height(),
        };
    let out = if whole && (p.out_w, p.out_h) == (img.width(), img.height()) {
        img
    } else {
        crop_resize(&img, p.region, p.out_w, p.out_h)
    };
    encode(out, format)
}

/// A thumbnail just made, as the requests that waited for it are
/// answered: from these bytes, with the date the stored file gets, so
/// they need not wait for the file (nor read it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    pub bytes: Bytes,
    pub meta: ObjectMeta,
}

type Outcome = Option<Result<Option<Fresh>, Arc<str>>>;

/// The thumbnail maker shared by every request: slots (one per core) for
/// the CPU work, and the thumbnails being made now, so that concurrent
/// requests for one wait for the same making. Cheap to clone.
#[derive(Clone)]
pub struct Thumbnails {
    slots: Arc<Semaphore>,
    pending: Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>,
    /// Thumbnails rendered since start (what single-flight saves shows here).
    rendered: Arc<AtomicU64>,
    /// Thumbnails that cannot be made (not an image, too large, corrupt):
    /// asked again, they fail at once instead of taking a slot each time.
    failed: Arc<Mutex<HashSet<String>>>,
    /// Woken whenever a making ends (stored or not): see [`Thumbnails::settled`].
    ended: Arc<tokio::sync::Notify>,
}

/// Most keys [`Thumbnails`] remembers as failed (then it starts over).
const MAX_FAILED: usize = 10_000;

impl Default for Thumbnails {
    fn default() -> Self {
        Thumbnails::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// Forgets a making when its task ends, however it ends.
struct Forget {
    pending: Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>,
    key: String,
    ended: Arc<tokio::sync::Notify>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
        self.ended.notify_waiters();
    }
}

impl Thumbnails {
    /// A maker running at most `slots` decodes at a time.
    pub fn new(slots: usize) -> Thumbnails {
        Thumbnails {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            pending: Arc::default(),
            rendered: Arc::default(),
            failed: Arc::default(),
            ended: Arc::default(),
        }
    }

    /// Returns once no making is under way: every thumbnail answered from
    /// memory so far is stored (or failed to be). For tests and shutdown.
    pub async fn settled(&self) {
        loop {
            let ended = self.ended.notified();
            if self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                return;
            }
            ended.await;
        }
    }

    /// How many thumbnails this maker has rendered.
    pub fn rendered(&self) -> u64 {
        self.rendered.load(Ordering::Relaxed)
    }

    /// Makes the thumbnail `thumb_key` of the image at `original_key`
    /// unless it exists. Concurrent calls for the same `thumb_key` wait
    /// for one making; the making goes on if the requests that wanted it
    /// are gone, so its work is not wasted. `Some` is the thumbnail made
    /// for this call (or the one it waited for): the waiters are answered
    /// as soon as it is rendered, and it is stored after that, while
    /// later requests for it still join this making. `None`: it was
    /// stored already.
    pub async fn ensure(
        &self,
        storage: &Storage,
        original_key: &str,
        thumb_key: &str,
        size: Size,
    ) -> Result<Option<Fresh>, ThumbError> {
        let (mut rx, leader) = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.get(thumb_key) {
                Some(rx) => (rx.clone(), None),
                None => {
                    let (tx, rx) = watch::channel(None);
                    pending.insert(thumb_key.to_owned(), rx.clone());
                    (rx, Some(tx))
                }
            }
        };
        if let Some(tx) = leader {
            let forget = Forget {
                pending: self.pending.clone(),
                key: thumb_key.to_owned(),
                ended: self.ended.clone(),
            };
            let (this, storage) = (self.clone(), storage.clone());
            let original_key = original_key.to_owned();
            tokio::spawn(async move {
                let (outcome, slot) = match this.make(&storage, &original_key, &forget.key, size).await {
                    Ok(Some((fresh, slot))) => (Ok(Some(fresh)), Some(slot)),
                    Ok(None) => (Ok(None), None),
                    Err(e) => (Err(e), None),
                };
                if let Err(ThumbError::Unsupported | ThumbError::TooLarge(_) | ThumbError::Decode(_)) = outcome {
                    let mut failed = this.failed.lock().unwrap_or_else(|e| e.into_inner());
                    if failed.len() >= MAX_FAILED {
                        failed.clear();
                    }
                    failed.insert(forget.key.clone());
                }
                let fresh = outcome.as_ref().ok().cloned().flatten();
                let _ = tx.send(Some(outcome.map_err(|e| Arc::from(e.to_string()))));
                if let Some(f) = fresh {
                    // Not stored: the next request makes it again.
                    if let Err(e) = storage.put_thumb(&forget.key, f.bytes, f.meta.modified).await {
                        tracing::warn!(thumb = %forget.key, error = %e, "storing a thumbnail");
                    }
                }
                // The slot bounds renders and the bytes held until stored.
                drop(slot);
                drop(forget);
            });
        }
        let done = rx.wait_for(Option::is_some).await;
        match done.as_deref() {
            Ok(Some(Ok(fresh))) => Ok(fresh.clone()),
            Ok(Some(Err(e))) => Err(ThumbError::Shared(e.clone())),
            _ => Err(ThumbError::Shared("the thumbnail task stopped".into())),
        }
    }

    /// Renders the thumbnail unless it is stored already (`None`), in a
    /// slot the caller keeps until the bytes are stored.
    async fn make(
        &self,
        storage: &Storage,
        original_key: &str,
        thumb_key: &str,
        size: Size,
    ) -> Result<Option<(Fresh, OwnedSemaphorePermit)>, ThumbError> {
        // A making that ended just before this one was registered.
        // (An empty file is what a crash can leave of an unsynced write.)
        if storage.head(thumb_key).await?.is_some_and(|m| m.size > 0) {
            return Ok(None);
        }
        let slot = tokio::time::timeout(MAX_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| ThumbError::Busy)?
            .map_err(|_| ThumbError::Busy)?;
        let object = storage.get(original_key, None).await?.ok_or(ThumbError::Missing)?;
        let (file, spool) = match object.body {
            Body::File { file, .. } => (file, None),
            Body::Stream(stream) => {
                let spool = SpoolFile::new_in(storage.spool_dir());
                (spool_stream(stream, &spool).await?, Some(spool))
            }
        };
        let rendered = tokio::task::spawn_blocking(move || render(BufReader::new(file), size))
            .await
            .map_err(|_| ThumbError::Decode("the image decoder failed".into()))??;
        drop(spool);
        self.rendered.fetch_add(1, Ordering::Relaxed);
        let bytes = Bytes::from(rendered.bytes);
        let meta = ObjectMeta {
            size: bytes.len() as u64,
            modified: std::time::SystemTime::now(),
        };
        Ok(Some((Fresh { bytes, meta }, slot)))
    }
}

/// Copies a remote object's bytes into `spool` (decoders need to seek) and
/// opens it for reading.
async fn spool_stream(
    mut stream: futures_util::stream::BoxStream<'static, io::Result<Bytes>>,
    spool: &SpoolFile,
) -> io::Result<std::fs::File> {
    let path = spool.path().to_owned();
    let mut file = std::fs::File::create(&path)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        file = tokio::task::spawn_blocking(move || file.write_all(&chunk).map(|_| file))
            .await
            .map_err(io::Error::other)??;
    }
    std::fs::File::open(&path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GenericImageView, ImageBuffer, Rgb, Rgba};
    use std::io::Cursor;

    fn size(width: u32, height: u32, fit: Fit) -> Size {
        Size { width, height, fit }
    }

    fn encoded(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    /// A 120 x 80 image: red in the top half, blue in the bottom half, a
    /// green column at x = 0.
    fn sample() -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(120, 80, |x, y| match (x, y) {
            (0, _) => Rgb([0, 255, 0]),
            (_, y) if y < 40 => Rgb([255, 0, 0]),
            _ => Rgb([0, 0, 255]),
        }))
    }

    fn thumb(bytes: &[u8], s: Size) -> (DynamicImage, &'static str) {
        let r = render(Cursor::new(bytes), s).unwrap();
        (image::load_from_memory(&r.bytes).unwrap(), r.mime)
    }

    #[test]
    fn sizes_as_pocketbase() {
        let p = |w, h, s| plan(w, h, s).map(|p| (p.out_w, p.out_h)).unwrap();
        assert_eq!(p(120, 80, size(50, 30, Fit::Center)), (50, 30));
        assert_eq!(p(120, 80, size(50, 30, Fit::Inside)), (45, 30));
        assert_eq!(p(120, 80, size(500, 300, Fit::Inside)), (120, 80), "never enlarged");
        assert_eq!(p(120, 80, size(0, 20, Fit::Center)), (30, 20));
        assert_eq!(p(120, 80, size(20, 0, Fit::Center)), (20, 13));
        assert_eq!(p(120, 80, size(240, 0, Fit::Center)), (240, 160), "zero sides scale up");
        assert_eq!(p(1, 1000, size(100, 0, Fit::Center)), (100, 100_000));
        // Cropping regions.
        let top = plan(120, 80, size(80, 20, Fit::Top)).unwrap().region;
        assert_eq!(
            top,
            Region {
                x: 0,
                y: 0,
                w: 120,
                h: 30
            }
        );
        let bottom = plan(120, 80, size(80, 20, Fit::Bottom)).unwrap().region;
        assert_eq!(
            bottom,
            Region {
                x: 0,
                y: 50,
                w: 120,
                h: 30
            }
        );
        let center = plan(120, 80, size(10, 20, Fit::Center)).unwrap().region;
        assert_eq!(
            center,
            Region {
                x: 40,
                y: 0,
                w: 40,
                h: 80
            }
        );
        assert!(matches!(
            plan(30_000, 10, size(0, 4096, Fit::Center)),
            Err(ThumbError::TooLarge(_))
        ));
        assert!(plan(10, 10, size(0, 0, Fit::Center)).is_err());
    }

    #[test]
    fn fits_crop_where_asked() {
        let png = encoded(sample(), ImageFormat::Png);
        let (img, mime) = thumb(&png, size(40, 10, Fit::Top));
        assert_eq!((img.dimensions(), mime), ((40, 10), "image/png"));
        assert_eq!(img.get_pixel(20, 5), Rgba([255, 0, 0, 255]), "top keeps red");
        let (img, _) = thumb(&png, size(40, 10, Fit::Bottom));
        assert_eq!(img.get_pixel(20, 5), Rgba([0, 0, 255, 255]), "bottom keeps blue");
        let (img, _) = thumb(&png, size(10, 40, Fit::Center));
        assert_eq!(img.dimensions(), (10, 40));
        assert_ne!(img.get_pixel(0, 5)[1], 255, "center crop drops the green edge");
        let (img, _) = thumb(&png, size(60, 60, Fit::Inside));
        assert_eq!(img.dimensions(), (60, 40));
        assert_eq!(thumb(&png, size(0, 8, Fit::Center)).0.dimensions(), (12, 8));
        assert_eq!(thumb(&png, size(30, 0, Fit::Center)).0.dimensions(), (30, 20));
    }

    #[test]
    fn formats_follow_the_source() {
        for (format, mime) in [
            (ImageFormat::Png, "image/png"),
            (ImageFormat::Jpeg, "image/jpeg"),
            (ImageFormat::Gif, "image/gif"),
            (ImageFormat::WebP, "image/png"),
        ] {
            let src = match format {
                ImageFormat::Gif | ImageFormat::WebP => DynamicImage::ImageRgba8(sample().to_rgba8()),
                _ => sample(),
            };
            let (img, got) = thumb(&encoded(src, format), size(24, 16, Fit::Center));
            assert_eq!((img.dimensions(), got), ((24, 16), mime), "{format:?}");
        }
    }

    #[test]
    fn non_images_and_corrupt_images_are_refused() {
        assert!(matches!(
            render(Cursor::new(b"hello".as_slice()), size(10, 10, Fit::Center)),
            Err(ThumbError::Unsupported)
        ));
        let mut png = encoded(sample(), ImageFormat::Png);
        png.truncate(60);
        assert!(render(Cursor::new(png), size(10, 10, Fit::Center)).is_err());
        // A BMP header: an image format, not one thumbnails are made of.
        let bmp = b"BM\x36\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".as_slice();
        assert!(matches!(
            render(Cursor::new(bmp), size(10, 10, Fit::Center)),
            Err(ThumbError::Unsupported)
        ));
    }

    #[tokio::test]
    async fn concurrent_requests_make_one_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let png = encoded(sample(), ImageFormat::Png);
        storage.put_bytes("c/r/a.png", Bytes::from(png)).await.unwrap();
        let thumbs = Thumbnails::new(2);
        let key = key("c", "r", "a.png", "10x10");
        let s = size(10, 10, Fit::Center);
        let all = (0..8).map(|_| thumbs.ensure(&storage, "c/r/a.png", &key, s));
        let made: Vec<Fresh> = futures_util::future::join_all(all)
            .await
            .into_iter()
            .map(|outcome| outcome.unwrap().expect("answered from the making"))
            .collect();
        assert_eq!(thumbs.rendered(), 1);
        assert!(made.iter().all(|f| *f == made[0]), "every waiter gets the one making");
        // The making stores the thumbnail after answering; it is pending
        // until then.
        thumbs.settled().await;
        let meta = storage.head(&key).await.unwrap().expect("the thumbnail is stored");
        assert_eq!(
            meta, made[0].meta,
            "stored with the date (and so the ETag) of the first answer"
        );
        let stored = storage.get(&key, None).await.unwrap().unwrap();
        let Body::File { mut file, .. } = stored.body else {
            panic!("a local file")
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        assert_eq!(bytes, made[0].bytes);
        assert_eq!(thumbs.ensure(&storage, "c/r/a.png", &key, s).await.unwrap(), None);
        assert_eq!(thumbs.rendered(), 1, "a stored thumbnail is not made again");
        assert!(thumbs.pending.lock().unwrap().is_empty());
        let missing = thumbs.ensure(&storage, "c/r/none.png", "c/r/thumbs_none.png/10x10_none.png", s);
        assert!(missing.await.is_err());
        // What cannot be made is remembered: asked again, it fails at once.
        storage
            .put_bytes("c/r/t.txt", Bytes::from_static(b"text"))
            .await
            .unwrap();
        let text_key = super::key("c", "r", "t.txt", "10x10");
        assert!(matches!(
            thumbs.ensure(&storage, "c/r/t.txt", &text_key, s).await,
            Err(ThumbError::Shared(_))
        ));
        assert!(thumbs.failed.lock().unwrap().contains(&text_key));
        assert!(thumbs.ensure(&storage, "c/r/t.txt", &text_key, s).await.is_err());
        assert_eq!(storage.head(&text_key).await.unwrap(), None);
    }

    #[test]
    fn bombs_are_refused_from_the_header() {
        // A few dozen bytes each; decoded they would be gigabytes.
        for (w, h) in [(50_000, 50_000), (40_000, 10), (10, 40_000), (7_000, 7_000)] {
            let err = render(Cursor::new(bomb_png(w, h)), size(100, 100, Fit::Center)).unwrap_err();
            assert!(matches!(err, ThumbError::TooLarge(_)), "{w}x{h}: {err}");
        }
    }

    /// A PNG that declares `w` x `h` RGB pixels in its header and holds
    /// almost no data (a decompression bomb as an attacker uploads it).
    fn bomb_png(w: u32, h: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let mut crc = !0u32;
            for &b in &out[start..] {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            out.extend_from_slice(&(!crc).to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 2, 0, 0, 0]].concat();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x01, 0x01, 0x01, 0x00, 0xfe, 0xff, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }
}

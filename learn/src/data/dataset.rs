//! The preprocessed dataset artifact: one file, versioned, checksummed.
//!
//! Little-endian layout:
//! ```text
//! magic "FMNPDS\0\0" | version u32 | mean f32 | std f32 | rows u32 | cols u32
//! | nsplits u32 | per split: name_len u8, name, count u32
//! | per split: labels [u8; count], source indices [u32; count], pixels [u8; count*rows*cols]
//! | blake3 of everything above (32 bytes)
//! ```
//! Pixels stay bytes (4x smaller than f32); normalization is applied as
//! batches are built, from the mean and std recorded here.

use std::path::Path;

const MAGIC: &[u8; 8] = b"FMNPDS\0\0";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub name: String,
    pub labels: Vec<u8>,
    /// Index of each example in its source file (for tracing an example back).
    pub indices: Vec<u32>,
    pub pixels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` examples (all of them when there are fewer), as a split
    /// named `name`; `pixels_per_image` is the dataset's rows × cols.
    pub fn head(&self, name: &str, n: usize, pixels_per_image: usize) -> Split {
        let n = n.min(self.len());
        Split {
            name: name.into(),
            labels: self.labels[..n].to_vec(),
            indices: self.indices[..n].to_vec(),
            pixels: self.pixels[..n * pixels_per_image].to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub rows: usize,
    pub cols: usize,
    pub mean: f32,
    pub std: f32,
    pub splits: Vec<Split>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct DatasetError {
    pub path: std::path::PathBuf,
    pub problem: String,
}

impl Dataset {
    pub fn split(&self, name: &str) -> Option<&Split> {
        self.splits.iter().find(|s| s.name == name)
    }

    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// `(x/255 - mean) / std` for one image.
    pub fn normalize(&self, pixels: &[u8], out: &mut [f32]) {
        let scale = 1.0 / (255.0 * self.std);
        let shift = self.mean / self.std;
        for (o, &p) in out.iter_mut().zip(pixels) {
            *o = p as f32 * scale - shift;
        }
    }

    /// The same for intensities already in f32 (after augmentation).
    pub fn normalize_f32(&self, pixels: &[f32], out: &mut [f32]) {
        let scale = 1.0 / (255.0 * self.std);
        let shift = self.mean / self.std;
        for (o, &p) in out.iter_mut().zip(pixels) {
            *o = p * scale - shift;
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let total: usize = self
            .splits
            .iter()
            .map(|s| s.len() * (5 + self.pixels_per_image()))
            .sum();
        let mut b = Vec::with_capacity(64 + total);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&self.mean.to_le_bytes());
        b.extend_from_slice(&self.std.to_le_bytes());
        b.extend_from_slice(&(self.rows as u32).to_le_bytes());
        b.extend_from_slice(&(self.cols as u32).to_le_bytes());
        b.extend_from_slice(&(self.splits.len() as u32).to_le_bytes());
        for s in &self.splits {
            b.push(s.name.len() as u8);
            b.extend_from_slice(s.name.as_bytes());
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        for s in &self.splits {
            b.extend_from_slice(&s.labels);
            for i in &s.indices {
                b.extend_from_slice(&i.to_le_bytes());
            }
            b.extend_from_slice(&s.pixels);
        }
        let h = blake3::hash(&b);
        b.extend_from_slice(h.as_bytes());
        b
    }

    /// Reads and checks a dataset file. The header is checked first and
    /// says how long the file must be, so a wrong file (or `/dev/zero`) is
    /// refused before its bulk is read.
    pub fn read(path: &Path) -> Result<Dataset, DatasetError> {
        use std::io::Read;
        let err = |problem: String| DatasetError {
            path: path.into(),
            problem,
        };
        let mut f = std::fs::File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let meta = f.metadata().map_err(|e| err(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        let mut bytes = Vec::new();
        let expected = expected_len(&mut f, &mut bytes).map_err(err)?;
        if meta.len() != expected {
            return Err(err(format!(
                "{} bytes where its header promises {expected}: the file is truncated or damaged",
                meta.len()
            )));
        }
        f.take(expected - bytes.len() as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        Dataset::from_bytes(&bytes).map_err(err)
    }

    pub fn from_bytes(b: &[u8]) -> Result<Dataset, String> {
        if b.len() < 8 + 32 || &b[..8] != MAGIC {
            return Err("not a preprocessed dataset (bad magic)".into());
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err("checksum mismatch: the file is corrupt or truncated".into());
        }
        let mut r = Reader { b: body, at: 8 };
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "format version {version}, this build reads version {VERSION}"
            ));
        }
        let mean = f32::from_bits(r.u32()?);
        let std = f32::from_bits(r.u32()?);
        let rows = r.u32()? as usize;
        let cols = r.u32()? as usize;
        let n = r.u32()? as usize;
        let mut heads = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.take(1)?[0] as usize;
            let name =
                String::from_utf8(r.take(len)?.to_vec()).map_err(|_| "split name is not UTF-8")?;
            heads.push((name, r.u32()? as usize));
        }
        let mut splits = Vec::with_capacity(n);
        for (name, count) in heads {
            let labels = r.take(count)?.to_vec();
            let indices = r
                .take(count * 4)?
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let pixels = r.take(count * rows * cols)?.to_vec();
            splits.push(Split {
                name,
                labels,
                indices,
                pixels,
            });
        }
        if r.at != body.len() {
            return Err("trailing bytes after the last split".into());
        }
        Ok(Dataset {
            rows,
            cols,
            mean,
            std,
            splits,
        })
    }
}

/// Largest image side and split count a dataset file may declare.
const MAX_SIDE: u64 = 4096;
const MAX_SPLITS: u64 = 64;

/// Reads the header from `r` into `head` and returns the whole file's
/// length as the header declares it.
fn expected_len(r: &mut impl std::io::Read, head: &mut Vec<u8>) -> Result<u64, String> {
    struct Head<'a, R> {
        r: &'a mut R,
        head: &'a mut Vec<u8>,
    }
    impl<R: std::io::Read> Head<'_, R> {
        fn take(&mut self, n: usize) -> Result<&[u8], String> {
            let at = self.head.len();
            self.head.resize(at + n, 0);
            self.r
                .read_exact(&mut self.head[at..])
                .map_err(|_| "too short to be a preprocessed dataset".to_string())?;
            Ok(&self.head[at..])
        }
        fn u32(&mut self) -> Result<u64, String> {
            let b = self.take(4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
        }
    }
    let mut h = Head { r, head };
    if h.take(8)? != MAGIC {
        return Err("not a preprocessed dataset (bad magic)".into());
    }
    h.take(12)?; // version, mean, std
    let (rows, cols, n) = (h.u32()?, h.u32()?, h.u32()?);
    if rows > MAX_SIDE || cols > MAX_SIDE || n > MAX_SPLITS {
        return Err(format!(
            "implausible header ({rows}x{cols} images, {n} splits): not a preprocessed dataset"
        ));
    }
    let mut body = 0u64;
    for _ in 0..n {
        let len = h.take(1)?[0] as usize;
        h.take(len)?;
        body += h.u32()? * (1 + 4 + rows * cols);
    }
    Ok(h.head.len() as u64 + body + 32)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("truncated")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Dataset {
        Dataset {
            rows: 2,
            cols: 2,
            mean: 0.5,
            std: 0.5,
            splits: vec![
                Split {
                    name: "train".into(),
                    labels: vec![1, 2],
                    indices: vec![0, 5],
                    pixels: vec![0, 255, 1, 2, 3, 4, 5, 6],
                },
                Split {
                    name: "test".into(),
                    labels: vec![],
                    indices: vec![],
                    pixels: vec![],
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_normalization() {
        let d = sample();
        let back = Dataset::from_bytes(&d.to_bytes()).unwrap();
        assert_eq!(back, d);
        let mut out = [0.0f32; 2];
        d.normalize(&[0, 255], &mut out);
        assert!((out[0] + 1.0).abs() < 1e-6 && (out[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn corruption_and_truncation_are_caught() {
        let mut b = sample().to_bytes();
        assert!(Dataset::from_bytes(&b[..b.len() - 1])
            .unwrap_err()
            .contains("checksum"));
        let mid = b.len() / 2;
        b[mid] ^= 1;
        assert!(Dataset::from_bytes(&b).unwrap_err().contains("checksum"));
        assert!(Dataset::from_bytes(b"hello")
            .unwrap_err()
            .contains("bad magic"));
    }

    #[test]
    fn read_checks_the_header_before_the_bulk() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good.fmnd");
        let bytes = sample().to_bytes();
        std::fs::write(&good, &bytes).unwrap();
        assert_eq!(Dataset::read(&good).unwrap(), sample());
        let short = d.path().join("short.fmnd");
        std::fs::write(&short, &bytes[..bytes.len() - 3]).unwrap();
        let e = Dataset::read(&short).unwrap_err().to_string();
        assert!(e.contains("header promises"), "{e}");
        let e = Dataset::read(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let zeros = d.path().join("zeros");
        std::fs::write(&zeros, vec![0u8; 4096]).unwrap();
        let e = Dataset::read(&zeros).unwrap_err().to_string();
        assert!(e.contains("bad magic"), "{e}");
        // A header claiming a gigantic file is refused by its length alone.
        let mut huge = bytes[..8 + 12].to_vec();
        for v in [4096u32, 4096, 1] {
            huge.extend_from_slice(&v.to_le_bytes());
        }
        huge.extend_from_slice(&[1, b't']);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        let hp = d.path().join("huge.fmnd");
        std::fs::write(&hp, &huge).unwrap();
        let e = Dataset::read(&hp).unwrap_err().to_string();
        assert!(e.contains("header promises"), "{e}");
    }
}

//! The IDX format (gzipped): big-endian magic `0x0000080D` where D is the
//! number of dimensions (1 for labels, 3 for images), D big-endian u32
//! sizes, then the unsigned bytes.

use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What is wrong with an IDX file, always with the file named.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct IdxError {
    pub path: PathBuf,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

fn fail(path: &Path, problem: impl Into<String>) -> IdxError {
    IdxError {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Reads and gunzips `path`.
pub fn read_gz(path: &Path) -> Result<Vec<u8>, IdxError> {
    let raw = std::fs::read(path).map_err(|e| fail(path, format!("cannot read: {e}")))?;
    if raw.len() < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
        return Err(fail(
            path,
            "not a gzip file (expected the gzip magic bytes 1f 8b)",
        ));
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    GzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| fail(path, format!("corrupt or truncated gzip data: {e}")))?;
    Ok(out)
}

/// Parses the header; returns the dimensions and the data after it.
fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    dims: usize,
) -> Result<(Vec<usize>, &'a [u8]), IdxError> {
    let header = 4 + 4 * dims;
    if bytes.len() >= 4 {
        let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let expected = 0x0800 | dims as u32;
        if magic != expected {
            return Err(fail(
                path,
                format!("bad magic number 0x{magic:08x}: expected 0x{expected:08x} (unsigned bytes, {dims} dimension(s))"),
            ));
        }
    }
    if bytes.len() < header {
        return Err(fail(
            path,
            format!(
                "truncated: {} bytes, shorter than the {header}-byte IDX header",
                bytes.len()
            ),
        ));
    }
    let sizes: Vec<usize> = (0..dims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let need: usize = sizes.iter().product();
    let data = &bytes[header..];
    if data.len() < need {
        return Err(fail(
            path,
            format!(
                "truncated: the header promises {need} bytes of data ({sizes:?}), the file has {}",
                data.len()
            ),
        ));
    }
    if data.len() > need {
        return Err(fail(
            path,
            format!(
                "{} unexpected bytes after the {need} bytes the header promises",
                data.len() - need
            ),
        ));
    }
    Ok((sizes, data))
}

pub fn decode_images(path: &Path, bytes: &[u8]) -> Result<Images, IdxError> {
    let (dims, data) = parse(path, bytes, 3)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(fail(
            path,
            format!("images of size {}x{}", dims[1], dims[2]),
        ));
    }
    Ok(Images {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels: data.to_vec(),
    })
}

pub fn decode_labels(path: &Path, bytes: &[u8], classes: u8) -> Result<Vec<u8>, IdxError> {
    let (_, data) = parse(path, bytes, 1)?;
    if let Some((i, &l)) = data.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(fail(
            path,
            format!("label {l} at index {i} is outside 0-{}", classes - 1),
        ));
    }
    Ok(data.to_vec())
}

/// Encodes IDX (for tests and synthetic data).
pub fn encode(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Gzips bytes (for tests and synthetic data).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).expect("writing to a Vec cannot fail");
    e.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("x.gz")
    }

    #[test]
    fn round_trip() {
        let img = encode(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let d = decode_images(p(), &img).unwrap();
        assert_eq!((d.count, d.rows, d.cols), (2, 2, 3));
        assert_eq!(
            decode_labels(p(), &encode(&[3], &[0, 9, 5]), 10).unwrap(),
            vec![0, 9, 5]
        );
    }

    #[test]
    fn every_defect_is_named() {
        let msg = |r: Result<Images, IdxError>| r.unwrap_err().to_string();
        assert!(msg(decode_images(p(), &encode(&[1], &[0]))).contains("bad magic"));
        assert!(msg(decode_images(p(), &[0, 0, 8, 3, 0])).contains("shorter than"));
        assert!(msg(decode_images(p(), &encode(&[2, 2, 2], &[0; 7])))
            .contains("truncated: the header promises 8"));
        assert!(
            msg(decode_images(p(), &encode(&[1, 2, 2], &[0; 5]))).contains("1 unexpected bytes")
        );
        let e = decode_labels(p(), &encode(&[3], &[0, 12, 1]), 10)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "x.gz: label 12 at index 1 is outside 0-9");
    }

    #[test]
    fn gzip_problems() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f.gz");
        std::fs::write(&f, b"plain text").unwrap();
        assert!(read_gz(&f)
            .unwrap_err()
            .to_string()
            .contains("not a gzip file"));
        let gz = gzip(&encode(&[100], &[1; 100]));
        std::fs::write(&f, &gz[..gz.len() / 2]).unwrap();
        assert!(read_gz(&f).unwrap_err().to_string().contains("truncated"));
        std::fs::write(&f, &gz).unwrap();
        assert_eq!(read_gz(&f).unwrap().len(), 108);
    }
}

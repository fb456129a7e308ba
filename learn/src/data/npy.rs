//! NumPy's `.npy` format (version 1.0) for `uint8` arrays: what
//! `preprocess` writes beside its own artifact so that code outside the
//! tool (`numpy.load`) reads the very same splits.
//!
//! Layout: the magic `\x93NUMPY`, the version (1, 0), the header's length
//! (u16, little-endian), the header (a Python dict literal, padded with
//! spaces and ended by `\n` so that the data starts at a multiple of 64
//! bytes), then the elements in C order.

use std::io::Write;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// The bytes of a `uint8` array of `shape` holding `data` (C order).
pub fn encode_u8(shape: &[usize], data: &[u8]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' to a multiple of 64.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Writes a `uint8` array to `path`.
pub fn write_u8(path: &Path, shape: &[usize], data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(&encode_u8(shape, data))?;
    f.flush()
}

/// The shape and elements of a `uint8` `.npy` file's bytes (version 1.0,
/// C order), or what is wrong with them.
pub fn decode_u8(bytes: &[u8]) -> Result<(Vec<usize>, &[u8]), String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    if bytes[6] != 1 {
        return Err(format!(
            "version {}.{}, only 1.0 is read",
            bytes[6], bytes[7]
        ));
    }
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = bytes
        .get(10..10 + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated header")?;
    if !header.contains("'descr': '|u1'") || !header.contains("'fortran_order': False") {
        return Err(format!("not a C-ordered uint8 array: {}", header.trim()));
    }
    let dims = header
        .split_once("'shape': (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .ok_or("no shape in the header")?
        .0;
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| format!("bad dimension `{d}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let data = &bytes[10 + len..];
    if data.len() != shape.iter().product::<usize>() {
        return Err(format!(
            "shape {shape:?} needs {} bytes, the file holds {}",
            shape.iter().product::<usize>(),
            data.len()
        ));
    }
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_numpys_and_aligned() {
        let b = encode_u8(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let len = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + len) % 64, 0, "data starts at a multiple of 64");
        let header = std::str::from_utf8(&b[10..10 + len]).unwrap();
        assert!(header.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(&b[10 + len..], &[1, 2, 3, 4, 5, 6]);
        let (shape, data) = decode_u8(&b).unwrap();
        assert_eq!((shape, data), (vec![2, 3], &[1u8, 2, 3, 4, 5, 6][..]));
    }

    #[test]
    fn one_dimension_is_a_python_tuple() {
        let b = encode_u8(&[4], &[9, 8, 7, 6]);
        assert!(std::str::from_utf8(&b[10..])
            .unwrap()
            .contains("'shape': (4,)"));
        assert_eq!(decode_u8(&b).unwrap().0, vec![4]);
        assert!(decode_u8(&b[..b.len() - 1])
            .unwrap_err()
            .contains("needs 4 bytes"));
        assert!(decode_u8(b"PK\x03\x04 not npy").is_err());
    }
}

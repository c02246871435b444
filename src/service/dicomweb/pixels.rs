//! Where an instance's frames lie in its file, starting from its PixelData
//! element (found by the header walker, [`super::walk::locate`]): either
//! fixed-size frames one after another (native pixel data) or the
//! fragments of encapsulated pixel data, grouped into frames one to one,
//! all in one frame, or by the basic offset table. Only byte positions are
//! computed; the bytes themselves are served as ranges of the file.

use std::ops::Range;

use super::walk::{ITEM, PixelData, SEQUENCE_END, UNDEFINED, u16_at, u32_at};

/// Image geometry of native pixel data.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub rows: u16,
    pub columns: u16,
    pub samples: u16,
    pub bits: u16,
    pub frames: u32,
}

/// The byte range of native frame `n` (1-based); `None` beyond the
/// frames, or for 1-bit frames that do not start on a byte.
pub fn native_frame(pixels: PixelData, g: Geometry, n: u32) -> Option<Range<u64>> {
    let length = u64::from(pixels.length?);
    let bits = u64::from(g.rows) * u64::from(g.columns) * u64::from(g.samples) * u64::from(g.bits);
    if n == 0 || n > g.frames || bits == 0 || (bits % 8 != 0 && g.frames > 1) {
        return None;
    }
    let size = bits.div_ceil(8);
    // Geometry comes from the file: nothing here may overflow.
    let start = u64::from(n - 1).checked_mul(size)?;
    let end = start.checked_add(size)?;
    (end <= length)
        .then_some(pixels.value_at.checked_add(start)?..pixels.value_at.checked_add(end)?)
}

/// One fragment of encapsulated pixel data: its item's offset from the
/// first fragment's item (what the basic offset table counts) and its
/// bytes in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub offset: u64,
    pub bytes: Range<u64>,
}

/// The fragments of frame `n` (1-based) of `frames`, by the usual rules:
/// one frame takes every fragment; as many fragments as frames go one to
/// one; otherwise the basic offset table (`table`, empty when absent)
/// says where each frame starts.
pub fn encapsulated_frame(
    fragments: &[Fragment],
    table: &[u32],
    frames: u32,
    n: u32,
) -> Option<Vec<Range<u64>>> {
    if n == 0 || n > frames || fragments.is_empty() {
        return None;
    }
    if frames == 1 {
        return Some(fragments.iter().map(|f| f.bytes.clone()).collect());
    }
    if fragments.len() == frames as usize {
        return Some(vec![fragments[n as usize - 1].bytes.clone()]);
    }
    if table.len() != frames as usize {
        return None;
    }
    let from = u64::from(table[n as usize - 1]);
    let to = table.get(n as usize).map_or(u64::MAX, |t| u64::from(*t));
    let spans: Vec<Range<u64>> = fragments
        .iter()
        .filter(|f| f.offset >= from && f.offset < to)
        .map(|f| f.bytes.clone())
        .collect();
    (!spans.is_empty()).then_some(spans)
}

/// What an item header of encapsulated pixel data (8 bytes) announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemHeader {
    /// An item (the offset table or a fragment) of this many bytes.
    Item(u32),
    /// The end of the pixel data.
    End,
}

/// Reads an item header; `None` for anything else (a broken file).
pub fn item_header(header: &[u8]) -> Option<ItemHeader> {
    let tag = (u16_at(header, 0)?, u16_at(header, 2)?);
    let len = u32_at(header, 4)?;
    match tag {
        ITEM if len != UNDEFINED => Some(ItemHeader::Item(len)),
        SEQUENCE_END => Some(ItemHeader::End),
        _ => None,
    }
}

/// The basic offset table's entries.
pub fn offset_table(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .filter_map(|c| c.try_into().ok().map(u32::from_le_bytes))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::dicomweb::walk::locate;
    use crate::upload::dicom::testdata::{Image, ct_image};

    #[test]
    fn finds_native_frames() {
        let pixels: Vec<u8> = (0..4 * 3 * 2).map(|i| i as u8).collect();
        let image = Image {
            sop_instance_uid: "1.2.3",
            instance_number: Some(1),
            rows: Some((4, 3)),
            frames: None,
            pixels: pixels.clone(),
        };
        let file = ct_image("1.2", "1.2.3", "Doe^Jane", &image);
        let at = locate(&file, "1.2.840.10008.1.2.1").unwrap();
        assert_eq!(at.length, Some(24));
        let g = Geometry {
            rows: 4,
            columns: 3,
            samples: 1,
            bits: 16,
            frames: 1,
        };
        let frame = native_frame(at, g, 1).unwrap();
        assert_eq!(&file[frame.start as usize..frame.end as usize], &pixels[..]);
        assert!(native_frame(at, g, 0).is_none());
        assert!(native_frame(at, g, 2).is_none());
        let two = Geometry {
            frames: 2,
            rows: 2,
            ..g
        };
        let second = native_frame(at, two, 2).unwrap();
        assert_eq!(
            &file[second.start as usize..second.end as usize],
            &pixels[12..]
        );
        assert!(locate(&file, "1.2.840.10008.1.2.2").is_none(), "big endian");
        assert!(
            locate(&file[..200], "1.2.840.10008.1.2.1").is_none(),
            "cut short"
        );
    }

    #[test]
    fn groups_fragments_into_frames() {
        let f = |offset: u64, at: u64| Fragment {
            offset,
            bytes: at..at + 10,
        };
        let fragments = vec![f(0, 100), f(18, 118), f(36, 136)];
        assert_eq!(
            encapsulated_frame(&fragments, &[], 1, 1).unwrap().len(),
            3,
            "one frame: every fragment"
        );
        assert_eq!(
            encapsulated_frame(&fragments, &[], 3, 2).unwrap(),
            vec![118..128]
        );
        let two = encapsulated_frame(&fragments[..], &[0, 36], 2, 1).unwrap();
        assert_eq!(two, vec![100..110, 118..128]);
        assert_eq!(
            encapsulated_frame(&fragments, &[0, 36], 2, 2).unwrap(),
            vec![136..146]
        );
        assert!(encapsulated_frame(&fragments, &[], 2, 1).is_none());
        assert!(encapsulated_frame(&fragments, &[], 3, 4).is_none());
    }

    /// Geometry is the file's claim: the largest it can claim computes no
    /// frame (instead of overflowing).
    #[test]
    fn hostile_geometry_is_no_frame() {
        let at = PixelData {
            value_at: u64::MAX - 10,
            length: Some(u32::MAX),
        };
        let g = Geometry {
            rows: u16::MAX,
            columns: u16::MAX,
            samples: u16::MAX,
            bits: 16,
            frames: u32::MAX,
        };
        assert!(native_frame(at, g, u32::MAX).is_none());
        assert!(native_frame(at, g, 1).is_none());
        let small = Geometry {
            rows: 1,
            columns: 1,
            samples: 1,
            bits: 8,
            frames: 20,
        };
        assert!(
            native_frame(at, small, 20).is_none(),
            "past u64 from value_at"
        );
    }
}

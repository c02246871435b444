//! The DICOM header walker: reads a file's first bytes element by element
//! (little endian, explicit or implicit VR; nested sequences skipped item
//! by item, so an icon image's own pixel data is never taken for the
//! image's) without parsing values. It answers three questions about a
//! header: its transfer syntax ([`meta_syntax`]), where its PixelData
//! element lies ([`locate`], what the frame locator in [`super::pixels`]
//! starts from), and how much of the first bytes the upload index needs
//! ([`index_cut`]). Only byte positions come out; a value is never read
//! beyond the transfer syntax UID.

use std::cell::Cell;

const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);
pub(super) const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
pub(super) const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
pub(super) const UNDEFINED: u32 = u32::MAX;
/// How deep nested sequences may go before the header is given up on.
const MAX_DEPTH: usize = 16;

/// The PixelData element: where its value starts and its length
/// (`None`: undefined, i.e. encapsulated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelData {
    pub value_at: u64,
    pub length: Option<u32>,
}

struct Walker<'a> {
    buf: &'a [u8],
    /// Set when an element header ran past the end of `buf`: the walk
    /// stopped at the end of the bytes read, not at a broken header.
    short: Cell<bool>,
}

pub(super) fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

pub(super) fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// An element header: its tag, value length, where its value starts, and
/// whether the value of undefined length it may announce is read as
/// implicit VR (the file's syntax, or VR UN: PS3.5 §6.2.2 says such a
/// sequence is encoded implicit VR little endian whatever the file's).
struct Element {
    tag: (u16, u16),
    len: u32,
    value: usize,
    implicit_inside: bool,
}

impl<'a> Walker<'a> {
    fn new(buf: &'a [u8]) -> Walker<'a> {
        Walker {
            buf,
            short: Cell::new(false),
        }
    }

    /// An element header at `at`, read as implicit VR when `implicit`.
    /// Item and delimiter tags have no VR in any syntax.
    fn header(&self, at: usize, implicit: bool) -> Option<Element> {
        if at.checked_add(12).is_none_or(|end| end > self.buf.len()) {
            self.short.set(true);
        }
        let tag = (u16_at(self.buf, at)?, u16_at(self.buf, at + 2)?);
        if tag.0 == 0xFFFE || implicit {
            let len = u32_at(self.buf, at + 4)?;
            return Some(Element {
                tag,
                len,
                value: at + 8,
                implicit_inside: implicit,
            });
        }
        let vr = self.buf.get(at + 4..at + 6)?;
        let long = matches!(
            vr,
            b"OB"
                | b"OD"
                | b"OF"
                | b"OL"
                | b"OV"
                | b"OW"
                | b"SQ"
                | b"SV"
                | b"UC"
                | b"UN"
                | b"UR"
                | b"UT"
                | b"UV"
        );
        let (len, value) = if long {
            (u32_at(self.buf, at + 8)?, at + 12)
        } else {
            (u32::from(u16_at(self.buf, at + 6)?), at + 8)
        };
        Some(Element {
            tag,
            len,
            value,
            implicit_inside: vr == b"UN",
        })
    }

    /// Past the value of undefined length that starts at `at`: items up
    /// to the sequence delimiter (or elements up to the item delimiter
    /// when `in_item`), their elements read as implicit VR when
    /// `implicit`.
    fn skip_undefined(
        &self,
        mut at: usize,
        (in_item, implicit): (bool, bool),
        depth: usize,
    ) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        let end = if in_item { ITEM_END } else { SEQUENCE_END };
        loop {
            let e = self.header(at, implicit)?;
            if e.tag == end {
                return Some(e.value);
            }
            at = match (e.tag == ITEM, e.len == UNDEFINED) {
                (true, true) => self.skip_undefined(e.value, (true, implicit), depth + 1)?,
                (false, true) => {
                    self.skip_undefined(e.value, (false, e.implicit_inside), depth + 1)?
                }
                (_, false) => e.value.checked_add(e.len as usize)?,
            };
        }
    }
}

/// Where the data set of a DICOM file begins: after the preamble, `DICM`
/// and the file meta group (whose group length says how long it is).
fn data_set_start(head: &[u8]) -> Option<usize> {
    if head.get(128..132)? != b"DICM" || u16_at(head, 132)? != 0x0002 || u16_at(head, 134)? != 0 {
        return None;
    }
    let meta_len = u32_at(head, 140)? as usize;
    144usize.checked_add(meta_len)
}

/// Finds PixelData among the top-level elements of `head` (the file's
/// first bytes, holding at least its whole header) in transfer syntax
/// `syntax`; `None` for syntaxes this walker does not read (big endian,
/// deflated) or a header it cannot follow.
pub fn locate(head: &[u8], syntax: &str) -> Option<PixelData> {
    let (_, e) = first_top_level(head, syntax, |tag| tag == PIXEL_DATA)?;
    Some(PixelData {
        value_at: e.value as u64,
        length: (e.len != UNDEFINED).then_some(e.len),
    })
}

/// How much of a file's first bytes the index needs.
#[derive(Debug, PartialEq, Eq)]
pub enum IndexCut {
    /// Everything before this offset: every element of the groups up to
    /// the last indexed one, and none of them follows it in the bytes read.
    At(usize),
    /// No element after those groups starts within the bytes read yet.
    NotYet,
    /// The header cannot be trusted to be in order (an element of an
    /// indexed group after a later one, a broken header, a syntax the
    /// walker does not read): read it whole instead.
    Unsure,
}

/// Where the first top-level element of a group after `group` starts in
/// `head` (a data set's elements come in ascending tag order). The walk
/// goes on to the end of `head`: a non-conformant file with an element
/// of group `group` or lower after that point would lose attributes if
/// cut there, so it is [`IndexCut::Unsure`], as is a walk that breaks
/// before the end of the bytes read.
pub fn index_cut(head: &[u8], syntax: &str, group: u16) -> IndexCut {
    let (Some(implicit), Some(mut at)) = (implicit_vr(syntax), data_set_start(head)) else {
        return IndexCut::Unsure;
    };
    let walker = Walker::new(head);
    let mut cut = None;
    while at < head.len() {
        walker.short.set(false);
        let Some(e) = walker.header(at, implicit) else {
            break;
        };
        match cut {
            None if e.tag.0 > group => cut = Some(at),
            Some(_) if e.tag.0 <= group => return IndexCut::Unsure,
            _ => {}
        }
        let next = match e.len {
            UNDEFINED => walker.skip_undefined(e.value, (false, e.implicit_inside), 0),
            _ => e.value.checked_add(e.len as usize),
        };
        let Some(next) = next else {
            break;
        };
        at = next;
    }
    let ended = at >= head.len() || walker.short.get();
    match (cut, ended) {
        (Some(at), true) => IndexCut::At(at),
        (None, true) => IndexCut::NotYet,
        (_, false) => IndexCut::Unsure,
    }
}

/// Whether `syntax` is read as implicit VR; `None` for syntaxes this
/// walker does not read (big endian, deflated).
fn implicit_vr(syntax: &str) -> Option<bool> {
    match syntax {
        "1.2.840.10008.1.2" => Some(true),
        "1.2.840.10008.1.2.2" | "1.2.840.10008.1.2.1.99" => None,
        _ => Some(false),
    }
}

/// The transfer syntax UID in the file meta group of `head`.
pub fn meta_syntax(head: &[u8]) -> Option<String> {
    let (walker, end) = (Walker::new(head), data_set_start(head)?);
    let mut at = 132;
    while at < end {
        let e = walker.header(at, false)?;
        let value_end = e.value.checked_add(e.len as usize)?;
        if e.tag == (0x0002, 0x0010) {
            let value = std::str::from_utf8(head.get(e.value..value_end)?).ok()?;
            return Some(value.trim_end_matches(['\0', ' ']).to_owned());
        }
        at = value_end;
    }
    None
}

/// The first top-level element whose tag `wanted`, and where it starts.
fn first_top_level(
    head: &[u8],
    syntax: &str,
    wanted: impl Fn((u16, u16)) -> bool,
) -> Option<(usize, Element)> {
    let implicit = implicit_vr(syntax)?;
    let walker = Walker::new(head);
    let mut at = data_set_start(head)?;
    loop {
        let e = walker.header(at, implicit)?;
        if wanted(e.tag) {
            return Some((at, e));
        }
        at = match e.len {
            UNDEFINED => walker.skip_undefined(e.value, (false, e.implicit_inside), 0)?,
            _ => e.value.checked_add(e.len as usize)?,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::dicom::Inspection;
    use crate::upload::dicom::testdata::{Image, ct_image};

    #[test]
    fn the_index_needs_the_header_only_through_group_0028() {
        let (file, syntax, _) = image_and_geometry();
        assert_eq!(syntax, "1.2.840.10008.1.2.1");
        let pixel_data = file.len() - 24 - 12;
        assert_eq!(index_cut(&file, &syntax, 0x0028), IndexCut::At(pixel_data));
        // A document instead of pixel data (an encapsulated PDF): its
        // first bytes, cut inside EncapsulatedDocument (0042,0011), are
        // enough, and index as the whole header does.
        let mut pdf = file[..pixel_data].to_vec();
        pdf.extend_from_slice(&[0x42, 0x00, 0x11, 0x00, b'O', b'B', 0, 0]);
        pdf.extend_from_slice(&(8u32 << 20).to_le_bytes());
        pdf.extend_from_slice(b"%PDF-1.7 and a few megabytes more");
        assert_eq!(index_cut(&pdf, &syntax, 0x0028), IndexCut::At(pixel_data));
        let Inspection::Dicom(_, from_head) = crate::upload::dicom::inspect(&pdf[..pixel_data])
        else {
            panic!("the head before the document parses");
        };
        let Inspection::Dicom(_, whole) = crate::upload::dicom::inspect(&file) else {
            panic!("the image parses");
        };
        assert_eq!(from_head, whole);
        assert_eq!(from_head.rows, Some(4));
        // Cut before group 0028 ends: not yet enough.
        let geometry = file
            .windows(4)
            .position(|w| w == [0x28, 0x00, 0x11, 0x00])
            .unwrap();
        let early = &file[..geometry + 4];
        assert_eq!(index_cut(early, &syntax, 0x0028), IndexCut::NotYet);
        assert_eq!(meta_syntax(&file[..140]), None);
    }

    /// A small CT image and where its first group 0028 element starts.
    fn image_and_geometry() -> (Vec<u8>, String, usize) {
        let image = Image {
            sop_instance_uid: "1.2.3",
            instance_number: Some(7),
            rows: Some((4, 3)),
            frames: None,
            pixels: vec![1; 24],
        };
        let file = ct_image("1.2", "1.2.3", "Doe^Jane", &image);
        let syntax = meta_syntax(&file).unwrap();
        let geometry = (144..file.len())
            .find(|&i| file[i..i + 2] == [0x28, 0] && &file[i + 4..i + 6] == b"US")
            .unwrap();
        (file, syntax, geometry)
    }

    #[test]
    fn an_indexed_element_after_a_later_group_means_reading_the_whole_header() {
        let (file, syntax, geometry) = image_and_geometry();
        // Not conformant: (0032,1060) before the image geometry.
        let mut odd = file[..geometry].to_vec();
        odd.extend_from_slice(&[0x32, 0x00, 0x60, 0x10, b'L', b'O', 2, 0, b'x', b' ']);
        odd.extend_from_slice(&file[geometry..]);
        assert_eq!(index_cut(&odd, &syntax, 0x0028), IndexCut::Unsure);
        // A walk that breaks inside the bytes read (items nested deeper
        // than the walker follows): not trusted either.
        let mut broken = file[..geometry].to_vec();
        broken.extend_from_slice(&[0x40, 0x00, 0x01, 0x00, b'S', b'Q', 0, 0]);
        broken.extend_from_slice(&u32::MAX.to_le_bytes());
        for _ in 0..MAX_DEPTH + 4 {
            broken.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        broken.extend_from_slice(&[0u8; 64]);
        assert_eq!(index_cut(&broken, &syntax, 0x0028), IndexCut::Unsure);
    }

    #[test]
    fn sv_and_uv_values_have_four_byte_lengths() {
        let (file, syntax, geometry) = image_and_geometry();
        let pixel_data = file.len() - 24 - 12;
        for vr in [b"SV", b"UV"] {
            // (0020,9999) with an 8-byte value: a 12-byte element header.
            let mut with = file[..geometry].to_vec();
            with.extend_from_slice(&[0x20, 0x00, 0x99, 0x99, vr[0], vr[1], 0, 0, 8, 0, 0, 0]);
            with.extend_from_slice(&[0xAB; 8]);
            with.extend_from_slice(&file[geometry..]);
            let cut = index_cut(&with, &syntax, 0x0028);
            assert_eq!(cut, IndexCut::At(pixel_data + 20), "{vr:?}");
            let found = locate(&with, &syntax).map(|p| p.value_at);
            assert_eq!(found, Some(pixel_data as u64 + 20 + 12), "{vr:?}");
        }
    }

    /// A private sequence of undefined length in VR UN inside an explicit
    /// VR file is implicit VR little endian inside (PS3.5 §6.2.2): read
    /// as explicit, its elements' lengths are garbage and PixelData after
    /// it is never found.
    #[test]
    fn walks_an_undefined_length_un_sequence_as_implicit_vr() {
        let pixels: Vec<u8> = (0..8 * 8 * 2).map(|i| i as u8).collect();
        let image = Image {
            sop_instance_uid: "1.2.3",
            instance_number: Some(1),
            rows: Some((8, 8)),
            frames: None,
            pixels: pixels.clone(),
        };
        let native = ct_image("1.2", "1.2.3", "Doe^Jane", &image);
        let pixel_element = native.len() - pixels.len() - 12;
        let implicit = |out: &mut Vec<u8>, (g, e): (u16, u16), v: &[u8]| {
            out.extend_from_slice(&g.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        };
        let mut un = Vec::new();
        // (0029,1010) UN, undefined length.
        un.extend_from_slice(&[0x29, 0x00, 0x10, 0x10, b'U', b'N', 0, 0]);
        un.extend_from_slice(&UNDEFINED.to_le_bytes());
        un.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        implicit(&mut un, (0x0008, 0x0100), b"ABCD");
        implicit(&mut un, (0x0008, 0x0104), b"a code meaning");
        // A nested sequence inside, also of undefined length.
        un.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF]);
        un.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        implicit(&mut un, (0x0008, 0x1150), b"1.2.840.10008.5.1.4.1.1.2\0");
        un.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        un.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        un.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        un.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let mut file = native[..pixel_element].to_vec();
        file.extend_from_slice(&un);
        file.extend_from_slice(&native[pixel_element..]);
        let at = locate(&file, "1.2.840.10008.1.2.1").expect("PixelData after the UN sequence");
        assert_eq!(at.length, Some(pixels.len() as u32));
        let v = at.value_at as usize;
        assert_eq!(&file[v..], &pixels[..]);
    }

    #[test]
    fn finds_encapsulated_pixel_data_past_an_icons_own() {
        use crate::service::dicomweb::pixels::{ItemHeader, item_header};
        use crate::upload::dicom::testdata::encapsulated_image;
        let file = encapsulated_image("1.2", "1.2.3", "1.2.3.4", &[b"JPEG-1", b"JPEG-2"]);
        let at = locate(&file, "1.2.840.10008.1.2.4.50").unwrap();
        assert_eq!(at.length, None);
        let v = at.value_at as usize;
        assert_eq!(item_header(&file[v..v + 8]), Some(ItemHeader::Item(0)));
        assert_eq!(item_header(&file[v + 8..v + 16]), Some(ItemHeader::Item(6)));
        assert_eq!(&file[v + 16..v + 22], b"JPEG-1");
        assert_eq!(item_header(&file[file.len() - 8..]), Some(ItemHeader::End));
        let Inspection::Dicom(_, index) = crate::upload::dicom::inspect(&file) else {
            panic!("not parsed")
        };
        assert_eq!(index.transfer_syntax_uid, "1.2.840.10008.1.2.4.50");
        assert_eq!(index.number_of_frames, Some(2));
    }
}

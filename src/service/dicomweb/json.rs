//! DICOM JSON (PS3.18 annex F) of a data set: one entry per attribute,
//! keyed by its tag as eight upper-case hex digits, with its `vr` and its
//! `Value` (strings, numbers, person names as `{"Alphabetic": …}`, nested
//! data sets for sequences) or `InlineBinary` (base64) — binary values only
//! up to [`MAX_INLINE_BINARY`] bytes: larger ones (an encapsulated PDF, a
//! waveform, float pixel data) are content, retrieved and counted as a
//! download, never handed out with the header; their attribute is listed
//! with its `vr` and no value. Written here
//! rather than taken from a crate: the one there is turns on serde_json's
//! `preserve_order` for the whole build, which would change every JSON
//! object the gateway writes (its audit lines among them).

use base64::Engine;
use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{Tag, VR};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use serde_json::{Map, Number, Value, json};

/// The largest binary value written inline (a few small binary
/// attributes of a header, never content).
pub const MAX_INLINE_BINARY: usize = 256;

/// The DICOM JSON object of a data set.
pub fn data_set(object: &InMemDicomObject) -> Value {
    let map: Map<String, Value> = object.iter().map(|e| (key(e.tag()), element(e))).collect();
    Value::Object(map)
}

fn key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.0, tag.1)
}

fn element(e: &InMemElement) -> Value {
    let vr = e.vr();
    let mut out = Map::new();
    out.insert("vr".into(), Value::String(vr.to_string().into()));
    match e.value() {
        DicomValue::Sequence(seq) => {
            let items = seq.items().iter().map(data_set).collect();
            out.insert("Value".into(), Value::Array(items));
        }
        // Encapsulated pixel data is served as frames, never inline.
        DicomValue::PixelSequence(_) => {}
        DicomValue::Primitive(PrimitiveValue::Empty) => {}
        DicomValue::Primitive(v) if is_binary(vr) && v.calculate_byte_len() > MAX_INLINE_BINARY => {
        }
        DicomValue::Primitive(v) => {
            let (name, value) = primitive(vr, v);
            out.insert(name.into(), value);
        }
    }
    Value::Object(out)
}

fn number(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn strings(v: &PrimitiveValue) -> Vec<String> {
    v.to_multi_str()
        .iter()
        .map(|s| s.trim_end_matches(['\0', ' ']).trim_start().to_owned())
        .collect()
}

fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

fn primitive(vr: VR, v: &PrimitiveValue) -> (&'static str, Value) {
    let values: Vec<Value> = match vr {
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(v.to_bytes());
            return ("InlineBinary", Value::String(encoded));
        }
        VR::PN => strings(v)
            .into_iter()
            .map(|name| match name.is_empty() {
                true => Value::Null,
                false => person_name(&name),
            })
            .collect(),
        VR::IS | VR::SL | VR::SS | VR::UL | VR::US | VR::SV | VR::UV => strings(v)
            .iter()
            .map(|s| match s.trim().parse::<i64>() {
                Ok(n) => Value::Number(n.into()),
                Err(_) => s.trim().parse::<f64>().map_or(Value::Null, number),
            })
            .collect(),
        VR::DS | VR::FL | VR::FD => strings(v)
            .iter()
            .map(|s| s.trim().parse::<f64>().map_or(Value::Null, number))
            .collect(),
        VR::AT => match v {
            PrimitiveValue::Tags(tags) => tags.iter().map(|t| Value::String(key(*t))).collect(),
            _ => Vec::new(),
        },
        _ => strings(v)
            .into_iter()
            .map(|s| match s.is_empty() {
                true => Value::Null,
                false => Value::String(s),
            })
            .collect(),
    };
    ("Value", Value::Array(values))
}

/// A person name's component groups (alphabetic, ideographic, phonetic).
fn person_name(name: &str) -> Value {
    let mut groups = name.split('=');
    let mut out = Map::new();
    for label in ["Alphabetic", "Ideographic", "Phonetic"] {
        if let Some(g) = groups.next().filter(|g| !g.is_empty()) {
            out.insert(label.into(), json!(g));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::DataElement;
    use dicom_dictionary_std::tags;

    #[test]
    fn writes_annex_f() {
        let item = InMemDicomObject::from_element_iter([DataElement::new(
            tags::CODE_VALUE,
            VR::SH,
            PrimitiveValue::from("T-D3000"),
        )]);
        let object = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::PATIENT_NAME,
                VR::PN,
                PrimitiveValue::from("Doe^Jane=山田^花子"),
            ),
            DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from("7 ")),
            DataElement::new(tags::SLICE_THICKNESS, VR::DS, PrimitiveValue::from("1.25")),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(512_u16)),
            DataElement::new(tags::STUDY_DESCRIPTION, VR::LO, PrimitiveValue::Empty),
            DataElement::new(
                tags::FRAME_INCREMENT_POINTER,
                VR::AT,
                PrimitiveValue::Tags([tags::FRAME_TIME][..].into()),
            ),
            DataElement::new(
                tags::ANATOMIC_REGION_SEQUENCE,
                VR::SQ,
                DicomValue::from(dicom_core::value::DataSetSequence::from(vec![item])),
            ),
            DataElement::new(
                tags::ICON_IMAGE_SEQUENCE,
                VR::OB,
                PrimitiveValue::from(vec![1u8, 2, 3]),
            ),
        ]);
        let json = data_set(&object);
        assert_eq!(
            json["00100010"],
            json!({"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane", "Ideographic": "山田^花子"}]})
        );
        assert_eq!(json["00200013"], json!({"vr": "IS", "Value": [7]}));
        assert_eq!(json["00180050"], json!({"vr": "DS", "Value": [1.25]}));
        assert_eq!(json["00280010"], json!({"vr": "US", "Value": [512]}));
        assert_eq!(json["00081030"], json!({"vr": "LO"}));
        assert_eq!(json["00280009"], json!({"vr": "AT", "Value": ["00181063"]}));
        assert_eq!(
            json["00082218"]["Value"][0]["00080100"]["Value"][0],
            "T-D3000"
        );
        assert_eq!(
            json["00880200"],
            json!({"vr": "OB", "InlineBinary": "AQID"})
        );
    }

    /// An encapsulated document, a waveform or float pixel data is
    /// content: metadata names the attribute and leaves its bytes out
    /// (they are retrieved, and counted, as the instance); a few bytes of
    /// a header's own binary attributes stay inline.
    #[test]
    fn large_binary_values_are_left_out() {
        let document = vec![b'%'; 100_000];
        let object = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::ENCAPSULATED_DOCUMENT,
                VR::OB,
                PrimitiveValue::from(document),
            ),
            DataElement::new(
                tags::FLOAT_PIXEL_DATA,
                VR::OF,
                PrimitiveValue::F32(vec![1.5f32; 1000].into()),
            ),
            DataElement::new(
                tags::FILE_META_INFORMATION_VERSION,
                VR::OB,
                PrimitiveValue::from(vec![0u8, 1]),
            ),
        ]);
        let json = data_set(&object);
        assert_eq!(json["00420011"], serde_json::json!({"vr": "OB"}));
        assert_eq!(json["7FE00008"], serde_json::json!({"vr": "OF"}));
        assert_eq!(json["00020001"]["InlineBinary"], "AAE=");
    }
}

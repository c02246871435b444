//! The DICOM JSON (PS3.18 annex F) a QIDO-RS search answers, built from
//! the index: the study, series and instance attributes of PS3.18 table
//! 6.7.1-2 that viewers show, and the counts over the grant's instances
//! only (a study's other files are not the centre's to know of).

use std::collections::BTreeSet;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::{Map, Value};

use super::Instance;
use super::query::Query;

fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    let value = if value.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::from(value)
    };
    DataElement::new(tag, vr, value)
}

/// An integer string (IS) value; empty when the text is not a number.
fn int(tag: Tag, value: &str) -> DataElement<InMemDicomObject> {
    match value.trim().parse::<i32>() {
        Ok(n) => DataElement::new(tag, VR::IS, PrimitiveValue::from(n)),
        Err(_) => DataElement::new(tag, VR::IS, PrimitiveValue::Empty),
    }
}

fn count(tag: Tag, n: usize) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        VR::IS,
        PrimitiveValue::from(i32::try_from(n).unwrap_or(i32::MAX)),
    )
}

fn unsigned(tag: Tag, value: Option<u16>) -> Option<DataElement<InMemDicomObject>> {
    value.map(|v| DataElement::new(tag, VR::US, PrimitiveValue::from(v)))
}

fn to_json(elements: Vec<DataElement<InMemDicomObject>>) -> Value {
    super::json::data_set(&InMemDicomObject::from_element_iter(elements))
}

fn study_elements(i: &Instance) -> Vec<DataElement<InMemDicomObject>> {
    let (f, x) = (&i.fields, &i.index);
    vec![
        text(tags::STUDY_DATE, VR::DA, &f.study_date),
        text(tags::STUDY_TIME, VR::TM, &x.study_time),
        text(tags::ACCESSION_NUMBER, VR::SH, &x.accession_number),
        text(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &x.referring_physician_name,
        ),
        text(tags::STUDY_DESCRIPTION, VR::LO, &x.study_description),
        text(tags::PATIENT_NAME, VR::PN, &x.patient_name),
        text(tags::PATIENT_ID, VR::LO, &x.patient_id),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, &x.patient_birth_date),
        text(tags::PATIENT_SEX, VR::CS, &x.patient_sex),
        text(tags::STUDY_INSTANCE_UID, VR::UI, &f.study_instance_uid),
        text(tags::STUDY_ID, VR::SH, &x.study_id),
    ]
}

fn modalities(members: &[&Instance]) -> BTreeSet<String> {
    members
        .iter()
        .map(|i| i.fields.modality.clone())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Whether a study (its instances in the grant) matches the query.
pub(super) fn study_matches(members: &[&Instance], query: &Query) -> bool {
    let first = members[0];
    let (f, x) = (&first.fields, &first.index);
    let in_study = modalities(members);
    query.matches(tags::STUDY_INSTANCE_UID, &f.study_instance_uid)
        && query.matches(tags::STUDY_DATE, &f.study_date)
        && query.matches(tags::PATIENT_ID, &x.patient_id)
        && query.matches(tags::PATIENT_NAME, &x.patient_name)
        && query.matches(tags::ACCESSION_NUMBER, &x.accession_number)
        && query.matches(tags::STUDY_ID, &x.study_id)
        && query.matches(tags::STUDY_DESCRIPTION, &x.study_description)
        && [tags::MODALITIES_IN_STUDY, tags::MODALITY]
            .iter()
            .all(|tag| {
                in_study.iter().any(|m| query.matches(*tag, m))
                    || query.filters.iter().all(|f| f.tag != *tag)
            })
}

/// A study's attributes, with its counts over the grant's instances.
pub(super) fn study(members: &[&Instance]) -> Value {
    let first = members[0];
    let mut elements = study_elements(first);
    let all: Vec<String> = modalities(members).into_iter().collect();
    let series: BTreeSet<&str> = members.iter().map(|i| i.series()).collect();
    elements.push(DataElement::new(
        tags::MODALITIES_IN_STUDY,
        VR::CS,
        PrimitiveValue::Strs(all.into()),
    ));
    elements.push(count(tags::NUMBER_OF_STUDY_RELATED_SERIES, series.len()));
    elements.push(count(
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        members.len(),
    ));
    to_json(elements)
}

/// Whether a series (by its first instance) matches the query.
pub(super) fn series_matches(first: &Instance, query: &Query) -> bool {
    let (f, x) = (&first.fields, &first.index);
    query.matches(tags::SERIES_INSTANCE_UID, &f.series_instance_uid)
        && query.matches(tags::MODALITY, &f.modality)
        && query.matches(tags::SERIES_NUMBER, &x.series_number)
}

fn series_elements(i: &Instance) -> Vec<DataElement<InMemDicomObject>> {
    let (f, x) = (&i.fields, &i.index);
    vec![
        text(tags::MODALITY, VR::CS, &f.modality),
        text(tags::SERIES_DESCRIPTION, VR::LO, &x.series_description),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &f.series_instance_uid),
        int(tags::SERIES_NUMBER, &x.series_number),
    ]
}

/// A series' attributes (with its study's), and its count of instances
/// in the grant.
pub(super) fn series(members: &[&Instance]) -> Value {
    let first = members[0];
    let mut elements = study_elements(first);
    elements.extend(series_elements(first));
    elements.push(count(
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        members.len(),
    ));
    to_json(elements)
}

/// Whether an instance matches the query.
pub(super) fn instance_matches(i: &Instance, query: &Query) -> bool {
    series_matches(i, query)
        && query.matches(tags::SOP_INSTANCE_UID, i.sop())
        && query.matches(tags::SOP_CLASS_UID, &i.fields.sop_class_uid)
        && query.matches(tags::INSTANCE_NUMBER, &i.index.instance_number)
}

/// An instance's attributes, with its series' and study's.
/// An instance's QIDO-RS attributes; `used_up`: its file's downloads are
/// used up, so it is listed as `UNAVAILABLE` (still found, never
/// retrievable again under this grant).
pub(super) fn instance(i: &Instance, used_up: bool) -> Value {
    let x = &i.index;
    let mut elements = study_elements(i);
    elements.extend(series_elements(i));
    elements.extend([
        text(tags::SOP_CLASS_UID, VR::UI, &i.fields.sop_class_uid),
        text(tags::SOP_INSTANCE_UID, VR::UI, &x.sop_instance_uid),
        text(
            tags::INSTANCE_AVAILABILITY,
            VR::CS,
            if used_up { "UNAVAILABLE" } else { "ONLINE" },
        ),
        int(tags::INSTANCE_NUMBER, &x.instance_number),
        text(
            tags::AVAILABLE_TRANSFER_SYNTAX_UID,
            VR::UI,
            &x.transfer_syntax_uid,
        ),
    ]);
    elements.extend(unsigned(tags::ROWS, x.rows));
    elements.extend(unsigned(tags::COLUMNS, x.columns));
    elements.extend(unsigned(tags::BITS_ALLOCATED, x.bits_allocated));
    if let Some(frames) = x.number_of_frames {
        elements.push(int(tags::NUMBER_OF_FRAMES, &frames.to_string()));
    }
    to_json(elements)
}

/// Adds what a viewer needs to fetch the instance's pixels to its
/// metadata: the transfer syntax it is stored (and served) in.
pub(super) fn add_retrieval_hints(map: &mut Map<String, Value>, i: &Instance) {
    let syntax = &i.index.transfer_syntax_uid;
    if !syntax.is_empty() {
        map.insert(
            "00083002".into(),
            serde_json::json!({"vr": "UI", "Value": [syntax]}),
        );
    }
}

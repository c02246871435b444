-- What DICOMweb (QIDO-RS search, WADO-RS retrieval) needs of a DICOM file
-- beyond the manifest's fields: its SOP instance UID, instance and series
-- numbers, descriptions, the patient and study attributes a viewer's study
-- list shows, its transfer syntax and image geometry. Patient data, so it
-- is sealed under the case key like `meta_sealed` (JSON, purpose
-- "dicom-index", bound to the file id). NULL for files that are not DICOM
-- and for files completed before this column existed: the gateway then
-- reads the header from the stored object on first use and fills it in.
ALTER TABLE files ADD COLUMN dicom_index_sealed BLOB;

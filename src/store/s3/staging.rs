//! Staging objects: the durable bytes after an upload's last full part,
//! `staging/<key>/<generation>-<writer>`, and the sweep of the ones no
//! record can name any more.

use super::{MultipartProgress, S3Store};

pub(super) fn staging_key(key: &str, generation: u64, writer: Option<&str>) -> String {
    match writer {
        Some(writer) => format!("staging/{key}/{generation:010}-{writer}"),
        None => format!("staging/{key}/{generation:010}"),
    }
}

/// The generation a staging object's name carries (`None`: not one of
/// ours).
fn staging_generation(key: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(&format!("staging/{key}/"))?;
    // `<generation>-<writer>`, or `<generation>` alone (older names).
    let generation = rest.split('-').next()?;
    if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    generation.parse().ok()
}

impl MultipartProgress {
    /// The staging object this progress records (none when it has no
    /// staged bytes).
    pub(super) fn staging_key(&self, key: &str) -> Option<String> {
        (self.staging_len > 0)
            .then(|| staging_key(key, self.staging_generation, self.staging_writer.as_deref()))
    }
}

impl S3Store {
    /// Deletes, in the background, the staging objects of `key` that no
    /// record can name any more: every one of an older generation than
    /// `recorded`'s, and every other one of the same generation (a writer
    /// that lost the upload, a durable point whose commit failed). Writers
    /// only ever write newer generations than the record they opened from,
    /// so whatever they write meanwhile is never touched — wherever the
    /// lease is by then.
    pub(super) fn sweep_staging(&self, key: &str, recorded: &MultipartProgress) {
        let store = self.clone();
        let key = key.to_owned();
        let generation = recorded.staging_generation;
        let keep = recorded.staging_key(&key);
        tokio::spawn(async move {
            let pages = match store.bucket.list(format!("staging/{key}/"), None).await {
                Ok(pages) => pages,
                Err(e) => {
                    tracing::debug!(error = %e, "staging objects not listed");
                    return;
                }
            };
            for object in pages.iter().flat_map(|p| &p.contents) {
                let stale = staging_generation(&key, &object.key).is_some_and(|g| {
                    g < generation || (g == generation && keep.as_ref() != Some(&object.key))
                });
                if stale && let Err(e) = store.delete(&object.key).await {
                    tracing::debug!(error = %e, "stale staging object not deleted");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_carry_their_generation() {
        let key = "cases/c1/f1";
        assert_eq!(
            staging_generation(key, &staging_key(key, 7, Some("ab12"))),
            Some(7)
        );
        assert_eq!(staging_generation(key, &staging_key(key, 7, None)), Some(7));
        let big = 12_345_678_901;
        assert_eq!(
            staging_generation(key, &staging_key(key, big, Some("ab12"))),
            Some(big)
        );
        assert_eq!(
            staging_generation(key, "staging/cases/c1/f10/0000000001-ab"),
            None
        );
        assert_eq!(staging_generation(key, "staging/cases/c1/f1/x-1"), None);
    }
}

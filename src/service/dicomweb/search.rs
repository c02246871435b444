//! QIDO-RS search over the grant's instances, at study, series or
//! instance level.

use std::collections::BTreeMap;

use super::{Instance, Query, SEARCH, Scope, attributes, in_scope, record};
use crate::audit::{NewEntry, Outcome, RequestContext};
use crate::db::centres::CentreRow;
use crate::db::grants::GrantRow;
use crate::service::Services;
use crate::service::grants::GrantError;

/// What a QIDO-RS search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Studies,
    Series,
    Instances,
}

/// A QIDO-RS search at `level` within `scope`: DICOM JSON objects, one per
/// study, series or instance, paged by the query. Audited as a search.
pub async fn search(
    svc: &Services,
    ctx: &RequestContext,
    grant: (&GrantRow, &CentreRow),
    (level, scope): (Level, &Scope),
    query: &Query,
) -> Result<Vec<serde_json::Value>, GrantError> {
    let granted = in_scope(svc, ctx, grant, scope, SEARCH).await?;
    let all = &granted.instances;
    let results = match level {
        Level::Studies => {
            let studies = group(all, |i| i.study());
            let matching = studies
                .values()
                .filter(|members| attributes::study_matches(members, query))
                .map(|members| attributes::study(members));
            query.page(matching.collect())
        }
        Level::Series => {
            let series = group(all, |i| i.series());
            let matching = series
                .values()
                .filter(|members| attributes::series_matches(members[0], query))
                .map(|members| attributes::series(members));
            query.page(matching.collect())
        }
        Level::Instances => {
            let max = grant.0.max_downloads;
            let matching = all
                .iter()
                .filter(|i| attributes::instance_matches(i, query))
                .map(|i| attributes::instance(i, i.file.downloads >= max));
            query.page(matching.collect())
        }
    };
    let reason = format!(
        "{:?} of {}: {} results",
        level,
        scope.describe(),
        results.len()
    );
    let entry = NewEntry::new(SEARCH, Outcome::Allow).reason(reason);
    record(svc, ctx, grant, entry).await?;
    Ok(results)
}

/// Instances grouped by a key, in first-seen order of the sorted list.
fn group(
    all: &[Instance],
    key: impl Fn(&Instance) -> &str,
) -> BTreeMap<(usize, String), Vec<&Instance>> {
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    let mut out: BTreeMap<(usize, String), Vec<&Instance>> = BTreeMap::new();
    for (n, i) in all.iter().enumerate() {
        let k = key(i).to_owned();
        let at = *first.entry(k.clone()).or_insert(n);
        out.entry((at, k)).or_default().push(i);
    }
    out
}

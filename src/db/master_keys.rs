//! The master key version new case keys are wrapped under, recorded in the
//! database so that every gateway sharing it agrees
//! (`casegate keys rotate --stage`, then `--activate`). Unset, each gateway
//! uses the newest version its key file holds (one gateway, or keys
//! rotated in one step).

use super::{Db, DbError, Tx};

const ACTIVE: &str = "master_key_active_version";

pub async fn active_version(db: &Db) -> Result<Option<u32>, DbError> {
    db.meta_get(ACTIVE)
        .await?
        .map(|v| {
            v.parse::<u32>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or(DbError::Corrupt("meta.master_key_active_version"))
        })
        .transpose()
}

pub async fn set_active_version(tx: &mut Tx<'_>, version: u32) -> Result<(), DbError> {
    Db::meta_set(tx, ACTIVE, &version.to_string()).await
}

//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//! `migrations/` at compile time, and cargo only watches source files.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

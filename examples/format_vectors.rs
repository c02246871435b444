//! Prints object format v1 test vectors (see casegate::crypto::format::vectors).
//!
//!     cargo run --example format_vectors > tests/vectors/format-v1.json

fn main() {
    print!("{}", casegate::crypto::format::vectors::generate_json());
}

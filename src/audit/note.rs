//! Checkpoints as C2SP signed notes (c2sp.org/tlog-checkpoint,
//! c2sp.org/signed-note), Ed25519.
//!
//! A checkpoint's text is three lines — origin, tree size (decimal), root
//! hash (standard base64) — each ending in a newline. The signed note is the
//! text, an empty line, and one signature line per key:
//! `— <key name> <base64(key id ‖ signature)>` (an EM DASH). The key id is
//! the first 4 bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key), and a
//! verifier key is written `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::merkle::Hash;

/// The signature type byte of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
/// Signature lines start with an EM DASH and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// Notes larger than this are refused unread.
const MAX_NOTE_BYTES: usize = 16 * 1024;

/// Why a note, checkpoint or verifier key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("a key name must be non-empty, without spaces or '+'")]
    BadKeyName,
    #[error("not a verifier key (<name>+<hex key id>+<base64 Ed25519 key>)")]
    BadVerifierKey,
    #[error("not a signed note (text, empty line, signature lines)")]
    Malformed,
    #[error(
        "the signature by {0} does not verify: the checkpoint was altered or signed by another key"
    )]
    BadSignature(String),
    #[error("the note carries no signature by {0}")]
    NotSigned(String),
    #[error("not a checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

/// A checkpoint: the tree of `size` entries of the log `origin` has root
/// `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint's note text.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Reads a checkpoint from a note's (verified) text; extension lines
    /// after the root are allowed and ignored.
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::BadCheckpoint("no origin line"))?;
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .filter(|s| s.len() == 1 || !s.starts_with('0'))
            .and_then(|s| s.parse().ok())
            .ok_or(NoteError::BadCheckpoint(
                "the tree size is not a decimal number",
            ))?;
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| Hash::try_from(r).ok())
            .ok_or(NoteError::BadCheckpoint(
                "the root is not a base64 SHA-256 hash",
            ))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4].
fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(&[0x0a, ED25519_TYPE]);
    ctx.update(public);
    let digest = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest.as_ref()[..4]);
    id
}

/// Signs notes with the gateway's Ed25519 key under one key name.
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({})", self.verifier_key())
    }
}

impl NoteSigner {
    pub fn new(name: &str, key: Ed25519KeyPair) -> Result<NoteSigner, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKeyName);
        }
        Ok(NoteSigner {
            name: name.to_owned(),
            id: key_id(name, key.public_key().as_ref()),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed note of `text` (which ends in a newline).
    pub fn sign(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(signature.as_ref());
        format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        )
    }

    /// The verifier key: `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut typed = vec![ED25519_TYPE];
        typed.extend_from_slice(self.key.public_key().as_ref());
        format!(
            "{}+{}+{}",
            self.name,
            crate::hex::encode(&self.id),
            STANDARD.encode(typed)
        )
    }
}

/// Verifies notes signed by one Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    public: [u8; 32],
}

impl NoteVerifier {
    /// Parses a verifier key (surrounding whitespace ignored).
    pub fn parse(vkey: &str) -> Result<NoteVerifier, NoteError> {
        // The name has no '+' and the id is hex; base64 may hold '+'.
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadVerifierKey);
        };
        if !valid_name(name) {
            return Err(NoteError::BadKeyName);
        }
        let id: [u8; 4] = crate::hex::decode(id)
            .and_then(|b| b.try_into().ok())
            .ok_or(NoteError::BadVerifierKey)?;
        let typed = STANDARD
            .decode(key)
            .map_err(|_| NoteError::BadVerifierKey)?;
        let public: [u8; 32] = match typed.split_first() {
            Some((&ED25519_TYPE, public)) => {
                public.try_into().map_err(|_| NoteError::BadVerifierKey)?
            }
            _ => return Err(NoteError::BadVerifierKey),
        };
        if key_id(name, &public) != id {
            return Err(NoteError::BadVerifierKey);
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            id,
            public,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the note's signature by this key; returns the note's text.
    /// Signatures by other keys are ignored, as the format asks.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if note.len() > MAX_NOTE_BYTES || note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed);
        }
        let split = note.rfind("\n\n").ok_or(NoteError::Malformed)?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        let Some(signatures) = signatures.strip_suffix('\n') else {
            return Err(NoteError::Malformed);
        };
        let mut verified = false;
        for line in signatures.split('\n') {
            let rest = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or(NoteError::Malformed)?;
            let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed)?;
            let blob = STANDARD.decode(blob).map_err(|_| NoteError::Malformed)?;
            if name != self.name || blob.len() < 4 || blob[..4] != self.id {
                continue;
            }
            UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(text.as_bytes(), &blob[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if !verified {
            return Err(NoteError::NotSigned(self.name.clone()));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of c2sp.org/signed-note ("Verifier keys", "Example").
    const C2SP_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const C2SP_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    fn signer(name: &str) -> NoteSigner {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        NoteSigner::new(name, Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()).unwrap()
    }

    #[test]
    fn the_c2sp_example_verifies_and_a_changed_one_does_not() {
        let verifier = NoteVerifier::parse(C2SP_VKEY).unwrap();
        assert_eq!(
            verifier.verify(C2SP_NOTE).unwrap(),
            "This is an example message.\n"
        );
        let changed = C2SP_NOTE.replace("an example", "no example");
        assert!(matches!(
            verifier.verify(&changed),
            Err(NoteError::BadSignature(_))
        ));
    }

    #[test]
    fn signed_checkpoints_round_trip_and_keys_are_checked() {
        let s = signer("gw.example/casegate-audit");
        let checkpoint = Checkpoint {
            origin: "gw.example/casegate-audit".into(),
            size: 42,
            root: [7u8; 32],
        };
        let note = s.sign(&checkpoint.text());
        assert!(note.contains("\n\n\u{2014} gw.example/casegate-audit "));
        let verifier = NoteVerifier::parse(&s.verifier_key()).unwrap();
        let text = verifier.verify(&note).unwrap();
        assert_eq!(Checkpoint::parse(text).unwrap(), checkpoint);
        // Another key of the same name: its id differs, so it is not ours.
        let other =
            NoteVerifier::parse(&signer("gw.example/casegate-audit").verifier_key()).unwrap();
        assert!(matches!(other.verify(&note), Err(NoteError::NotSigned(_))));
        // A changed size.
        let forged = note.replacen("\n42\n", "\n41\n", 1);
        assert!(verifier.verify(&forged).is_err());
        // A vkey whose id does not match its name and key.
        let vkey = s.verifier_key().replacen('+', "x+", 1);
        assert!(NoteVerifier::parse(&vkey).is_err());
    }

    /// A note cosigned by others (witnesses, a second key of the same
    /// name): ours is found among the lines in any order; a bad signature
    /// under our key id fails even beside a good one; others alone do not
    /// count.
    #[test]
    fn a_note_with_several_signature_lines() {
        let ours = signer("gw.example/casegate-audit");
        let witness = signer("witness.example/w1");
        let namesake = signer("gw.example/casegate-audit");
        let text = Checkpoint {
            origin: "gw.example/casegate-audit".into(),
            size: 5,
            root: [3u8; 32],
        }
        .text();
        let sig = |s: &NoteSigner| s.sign(&text)[text.len() + 1..].to_owned();
        let (mine, theirs, same_name) = (sig(&ours), sig(&witness), sig(&namesake));
        let verifier = NoteVerifier::parse(&ours.verifier_key()).unwrap();
        for lines in [
            format!("{theirs}{mine}"),
            format!("{mine}{theirs}{same_name}"),
            format!("{same_name}{theirs}{mine}"),
        ] {
            let note = format!("{text}\n{lines}");
            assert_eq!(verifier.verify(&note).unwrap(), text, "{note}");
        }
        let others_only = format!("{text}\n{theirs}{same_name}");
        assert!(matches!(
            verifier.verify(&others_only),
            Err(NoteError::NotSigned(_))
        ));
        // Our key id with another signature (the witness's bytes) beside ours.
        let (_, blob) = mine.trim_end().rsplit_once(' ').unwrap();
        let (_, their_blob) = theirs.trim_end().rsplit_once(' ').unwrap();
        let mut bytes = STANDARD.decode(their_blob).unwrap();
        bytes[..4].copy_from_slice(&STANDARD.decode(blob).unwrap()[..4]);
        let bad = format!(
            "\u{2014} gw.example/casegate-audit {}\n",
            STANDARD.encode(bytes)
        );
        let note = format!("{text}\n{mine}{bad}");
        assert!(matches!(
            verifier.verify(&note),
            Err(NoteError::BadSignature(_))
        ));
    }

    #[test]
    fn checkpoint_text_is_strict() {
        assert!(Checkpoint::parse("o\n01\nAAAA\n").is_err());
        assert!(Checkpoint::parse("o\n1\nnot base64\n").is_err());
        assert!(Checkpoint::parse("\n1\n").is_err());
    }
}

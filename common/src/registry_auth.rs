//! The deployment key and the proofs made with it (issue 16, docs/SECURITY.md).
//!
//! One random 32-byte key per deployment, in a file of 64 hex digits that
//! `./bootstrap.sh` makes (mode 0600) and hands to the registry, the servers
//! and the load balancer. A client proves it holds the key by ending each
//! line with a [`Proof`]: an HMAC-SHA256 (RustCrypto `hmac` + `sha2`, not
//! hand-written) over [`signing_input`] with a fresh timestamp and a random
//! nonce. The registry checks the tag in constant time
//! ([`Key::verify`]) and keeps the window and the nonces seen
//! (`ipcs_registry::replay`).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::registry_proto::{signing_input, ClientLine, Proof, SignedLine, TAG_LEN};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a key.
pub const KEY_LEN: usize = 32;

/// The longest key file read (64 hex digits and some whitespace); anything
/// longer is not a key file.
const MAX_KEY_FILE: u64 = 1024;

/// The deployment key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is larger than {MAX_KEY_FILE} bytes: not a key file")]
    TooLarge { path: PathBuf },
    #[error("key file {path} must hold exactly {} hex digits (a {KEY_LEN}-byte key, as ./bootstrap.sh key makes), optionally followed by a newline", 2 * KEY_LEN)]
    Malformed { path: PathBuf },
    #[error("key file {path} holds the all-zero key")]
    Zero { path: PathBuf },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Key {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Key {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        Key(bytes)
    }

    /// The key as 64 lower-case hex digits (the key file's content).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses a key file's text: 64 hex digits (either case), surrounding
    /// whitespace allowed.
    fn parse_hex(text: &str) -> Option<Key> {
        crate::registry_proto::parse_hex(&text.trim().to_ascii_lowercase()).map(Key)
    }

    /// Reads a key file. Read it before dropping privileges: the file is
    /// meant to be readable by root only.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.len() > MAX_KEY_FILE {
            return Err(KeyError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let key = Key::parse_hex(&text).ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
        })?;
        if key.0 == [0; KEY_LEN] {
            return Err(KeyError::Zero {
                path: path.to_owned(),
            });
        }
        Ok(key)
    }

    /// Writes the key to a new file of mode 0600 (fails if it exists).
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let write = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write)?;
        writeln!(file, "{}", self.to_hex()).map_err(write)
    }

    fn mac(&self, line: &ClientLine, unix_ms: u64, nonce: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(signing_input(line, unix_ms, nonce).as_bytes());
        mac
    }

    /// `line` with a proof made at `unix_ms` with `nonce`.
    pub fn sign_at(&self, line: ClientLine, unix_ms: u64, nonce: u64) -> SignedLine {
        let tag: [u8; TAG_LEN] = self
            .mac(&line, unix_ms, nonce)
            .finalize()
            .into_bytes()
            .into();
        SignedLine {
            line,
            proof: Some(Proof {
                unix_ms,
                nonce,
                tag,
            }),
        }
    }

    /// `line` with a proof made now with a random nonce.
    pub fn sign(&self, line: ClientLine) -> SignedLine {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).expect("the OS random source failed");
        self.sign_at(line, unix_ms_now(), u64::from_be_bytes(nonce))
    }

    /// Whether `proof`'s tag is this key's for `line` (constant time: the
    /// crate's `verify_slice`). Time and nonce are the caller's to check.
    pub fn verify(&self, line: &ClientLine, proof: &Proof) -> bool {
        self.mac(line, proof.unix_ms, proof.nonce)
            .verify_slice(&proof.tag)
            .is_ok()
    }
}

/// `line` signed with `key`, or bare without one (a registry run with
/// `--insecure-no-auth` takes bare lines).
pub fn seal(key: Option<&Key>, line: ClientLine) -> SignedLine {
    match key {
        Some(key) => key.sign(line),
        None => SignedLine::bare(line),
    }
}

/// Milliseconds since the Unix epoch by the wall clock (0 before 1970).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> Key {
        Key::from_bytes([fill; KEY_LEN])
    }

    #[test]
    fn a_proof_verifies_with_its_key_only_and_for_its_line_only() {
        let signed = key(1).sign_at(ClientLine::List, 1_000, 7);
        let proof = signed.proof.unwrap();
        assert!(key(1).verify(&ClientLine::List, &proof));
        assert!(!key(2).verify(&ClientLine::List, &proof));
        assert!(!key(1).verify(&ClientLine::Stats, &proof));
        for changed in [
            Proof {
                unix_ms: 1_001,
                ..proof
            },
            Proof { nonce: 8, ..proof },
            Proof {
                tag: [0; TAG_LEN],
                ..proof
            },
        ] {
            assert!(!key(1).verify(&ClientLine::List, &changed));
        }
    }

    #[test]
    fn the_tag_is_hmac_sha256_of_the_documented_input() {
        // RFC 4231 test case 2 checks the crates; this pins our input.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let got: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(
            signing_input(&ClientLine::Watch(5), 1_700_000_000_000, 0xab),
            "ipcs-registry-v1 1700000000000 00000000000000ab WATCH 5"
        );
    }

    #[test]
    fn key_files_are_64_hex_digits() {
        let dir = std::env::temp_dir().join(format!("ipcs-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        let _ = std::fs::remove_file(&path);
        let k = Key::generate();
        k.write_new(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Key::load(&path).unwrap(), k);
        assert!(k.write_new(&path).is_err(), "never overwrites");
        for bad in ["", "abc", &"0".repeat(64), &"g".repeat(64), &"a".repeat(66)] {
            std::fs::write(&path, bad).unwrap();
            assert!(Key::load(&path).is_err(), "{bad:?}");
        }
        std::fs::write(&path, format!("  {}\n\n", "AB".repeat(32))).unwrap();
        assert_eq!(Key::load(&path).unwrap(), key(0xab));
        assert!(matches!(
            Key::load(&dir.join("missing")),
            Err(KeyError::Read { .. })
        ));
        assert_eq!(format!("{k:?}"), "Key(<redacted>)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

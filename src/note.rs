//! C2SP signed notes (Ed25519 only) and the tlog checkpoint note body.
//!
//! A signed note (<https://c2sp.org/signed-note>) is a UTF-8 text ending in a
//! newline, a blank line, then one or more signature lines
//! `— <key name> <base64(4-byte key ID || signature)>\n` (an EM DASH U+2014
//! and a space first). Only Ed25519 keys (signature type 0x01) are supported;
//! their key ID is the first four bytes of
//! `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)`, and the
//! signature covers exactly the note text, final newline included. This is
//! the format of `golang.org/x/mod/sumdb/note` and of transparency-log
//! checkpoints, so a ledger checkpoint can be checked by standard witnesses
//! and tools.
//!
//! A checkpoint (<https://c2sp.org/tlog-checkpoint>) is a note whose text is
//! `origin\nsize\nbase64(root)\n` followed by optional extension lines; it
//! commits to a Merkle tree head (see the `merkle` module).
//!
//! Everything that parses input ([`open_note`], [`Checkpoint::parse_body`],
//! [`base64_decode`]) is strict, bounded in size, never panics, and never
//! echoes input in its errors. Base64 is the RFC 4648 §4 standard alphabet
//! with padding, implemented here rather than pulled in as a dependency, and
//! only canonical encodings are accepted so that each value has exactly one
//! textual form.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Largest signed note accepted or produced, in bytes (1 MiB), so that a
/// hostile note cannot make the parser or verifier do unbounded work.
const MAX_NOTE_BYTES: usize = 1 << 20;

/// Largest number of signature lines accepted in one note. The spec requires
/// accepting at least 16; 100 matches the Go reference implementation.
const MAX_SIGNATURES: usize = 100;

/// Signature type identifier byte of Ed25519 in the key ID derivation.
const ED25519_SIGNATURE_TYPE: u8 = 0x01;

/// Prefix of every signature line: EM DASH (U+2014) then a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Length of an Ed25519 signature in bytes.
const ED25519_SIGNATURE_LEN: usize = 64;

/// Length of a key ID in bytes.
const KEY_ID_LEN: usize = 4;

/// The RFC 4648 §4 standard base64 alphabet.
const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a note, checkpoint or base64 string was rejected.
///
/// Messages never include any part of the rejected input, so they are safe
/// to log even when the input is attacker-controlled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note (or checkpoint body) is larger than the 1 MiB limit.
    #[error("note exceeds the 1 MiB size limit")]
    TooLarge,
    /// The note carries more than 100 signature lines.
    #[error("note has more than 100 signature lines")]
    TooManySignatures,
    /// The note is not text, blank line, signature lines, each ending in a
    /// newline, or it contains control characters other than newline.
    #[error("malformed note")]
    Malformed,
    /// A line of the signature block is not `— <name> <base64>` with a valid
    /// key name and at least a key ID and one signature byte.
    #[error("malformed signature line")]
    MalformedSignatureLine,
    /// A key name is empty or contains whitespace, `+` or control characters.
    #[error("invalid key name")]
    InvalidKeyName,
    /// The text to sign does not end with a newline or contains control
    /// characters other than newline.
    #[error("note text must end with a newline and contain no control characters")]
    InvalidText,
    /// The text to sign already ends with a blank line followed by signature
    /// lines, i.e. it is a signed note rather than a note text.
    #[error("note text already contains signature lines")]
    AlreadySigned,
    /// A signature line names the expected key (same name and key ID) but
    /// does not verify; the whole note is rejected, as the spec recommends.
    #[error("signature from the expected key does not verify")]
    InvalidSignature,
    /// No signature line comes from the expected key.
    #[error("note has no signature from the expected key")]
    NoSignatureFromKey,
    /// A base64 string is not canonical standard base64 with padding.
    #[error("invalid base64")]
    InvalidBase64,
    /// The note text is not a valid tlog checkpoint body.
    #[error("malformed checkpoint: {reason}")]
    MalformedCheckpoint {
        /// Which rule the body broke (a fixed description, never input).
        reason: &'static str,
    },
}

/// A transparency log checkpoint: the note text that commits to a Merkle
/// tree head (C2SP tlog-checkpoint).
///
/// Formatted by [`Checkpoint::body`] as `origin\nsize\nbase64(root)\n`
/// followed by one line per extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Identity of the log that issued the checkpoint; non-empty, without
    /// control characters. It should match the signing key's name.
    pub(crate) origin: String,
    /// Number of leaves in the tree.
    pub(crate) size: u64,
    /// RFC 9162 root hash of the tree at `size`.
    pub(crate) root: [u8; 32],
    /// Optional opaque extension lines, each non-empty and without control
    /// characters. Not recommended by the spec; kept for compatibility.
    pub(crate) extensions: Vec<String>,
}

impl Checkpoint {
    /// Checks the rules that [`Checkpoint::parse_body`] enforces, so that a
    /// checkpoint is only ever formatted into a body that parses back to
    /// itself.
    pub(crate) fn validate(&self) -> Result<(), NoteError> {
        if !is_checkpoint_line(&self.origin) {
            return Err(NoteError::MalformedCheckpoint {
                reason: "origin line must be non-empty without control characters",
            });
        }
        if !self.extensions.iter().all(|line| is_checkpoint_line(line)) {
            return Err(NoteError::MalformedCheckpoint {
                reason: "extension lines must be non-empty without control characters",
            });
        }
        Ok(())
    }

    /// The checkpoint's note text: `origin\nsize\nbase64(root)\n` and one
    /// line per extension, each ending in a newline.
    ///
    /// Does not validate: call [`Checkpoint::validate`] first for a
    /// checkpoint that was not produced by [`Checkpoint::parse_body`], or an
    /// origin containing a newline could forge extra lines.
    pub(crate) fn body(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.origin);
        out.push('\n');
        out.push_str(&self.size.to_string());
        out.push('\n');
        out.push_str(&base64_encode(&self.root));
        out.push('\n');
        for line in &self.extensions {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Parses a checkpoint note text strictly.
    ///
    /// Requires at least three newline-terminated lines: a non-empty origin
    /// without control characters, a decimal size without sign or leading
    /// zeros (except `0` itself) that fits in a `u64`, and the canonical
    /// base64 of exactly 32 bytes; any further lines are extension lines and
    /// must be non-empty without control characters.
    pub(crate) fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        if text.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge);
        }
        let Some(body) = text.strip_suffix('\n') else {
            return Err(NoteError::MalformedCheckpoint {
                reason: "body must end with a newline",
            });
        };
        let mut lines = body.split('\n');
        let origin = match lines.next() {
            Some(line) if is_checkpoint_line(line) => line,
            _ => {
                return Err(NoteError::MalformedCheckpoint {
                    reason: "origin line must be non-empty without control characters",
                })
            }
        };
        let size = lines
            .next()
            .and_then(parse_decimal_u64)
            .ok_or(NoteError::MalformedCheckpoint {
                reason: "size line must be a canonical decimal u64",
            })?;
        let root = lines
            .next()
            .and_then(|line| base64_decode(line).ok())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or(NoteError::MalformedCheckpoint {
                reason: "root line must be the canonical base64 of 32 bytes",
            })?;
        let mut extensions = Vec::new();
        for line in lines {
            if !is_checkpoint_line(line) {
                return Err(NoteError::MalformedCheckpoint {
                    reason: "extension lines must be non-empty without control characters",
                });
            }
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// Whether `line` may be a checkpoint origin or extension line: non-empty and
/// free of control characters (which also excludes newlines).
fn is_checkpoint_line(line: &str) -> bool {
    !line.is_empty() && !line.chars().any(char::is_control)
}

/// Parses a canonical unsigned decimal: ASCII digits only, no sign, no
/// leading zero unless the value is exactly `0`, no overflow.
pub(crate) fn parse_decimal_u64(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        acc.checked_mul(10)?.checked_add(digit)
    })
}

/// The C2SP key ID of an Ed25519 key:
/// `SHA-256(name || 0x0A || 0x01 || public_key)[..4]`.
///
/// Together with the key name it tells verifiers which key made a
/// signature; it is an identifier, not a security check.
pub(crate) fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519_SIGNATURE_TYPE]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    let mut id = [0u8; KEY_ID_LEN];
    for (out, byte) in id.iter_mut().zip(digest.iter()) {
        *out = *byte;
    }
    id
}

/// Whether `name` is a valid key name: non-empty, without Unicode
/// whitespace, `+` or control characters.
fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// Whether `text` contains an ASCII control character other than newline,
/// which the signed-note spec forbids anywhere in a note.
fn has_forbidden_control(text: &str) -> bool {
    text.chars().any(|c| c != '\n' && c < '\u{20}')
}

/// Whether `text` already ends like a signed note: after its last blank line
/// comes a line starting with the signature prefix.
fn looks_signed(text: &str) -> bool {
    text.rfind("\n\n")
        .and_then(|split| text.get(split.saturating_add(2)..))
        .is_some_and(|tail| tail.split('\n').any(|line| line.starts_with(SIGNATURE_PREFIX)))
}

/// Signs `text` with the Ed25519 key `key` under the key name `name` and
/// returns the signed note: the text, a blank line and one signature line.
///
/// The text must end with a newline, contain no control characters other
/// than newline and not already carry signature lines after a blank line;
/// the name must be a valid key name; the result must fit the 1 MiB limit
/// that [`open_note`] enforces.
pub(crate) fn sign_note(text: &str, name: &str, key: &SigningKey) -> Result<String, NoteError> {
    if !is_valid_key_name(name) {
        return Err(NoteError::InvalidKeyName);
    }
    if !text.ends_with('\n') || has_forbidden_control(text) {
        return Err(NoteError::InvalidText);
    }
    if looks_signed(text) {
        return Err(NoteError::AlreadySigned);
    }
    let signature: Signature = key.sign(text.as_bytes());
    let mut raw = Vec::with_capacity(KEY_ID_LEN + ED25519_SIGNATURE_LEN);
    raw.extend_from_slice(&key_id(name, key.verifying_key().as_bytes()));
    raw.extend_from_slice(&signature.to_bytes());
    let encoded = base64_encode(&raw);

    let mut out = String::with_capacity(
        text.len()
            .saturating_add(name.len())
            .saturating_add(encoded.len())
            .saturating_add(8),
    );
    out.push_str(text);
    out.push('\n');
    out.push_str(SIGNATURE_PREFIX);
    out.push_str(name);
    out.push(' ');
    out.push_str(&encoded);
    out.push('\n');
    if out.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge);
    }
    Ok(out)
}

/// Verifies a signed note against one trusted Ed25519 key and returns its
/// text (final newline included, separating blank line excluded).
///
/// The note must be at most 1 MiB, contain no control characters other than
/// newline, and consist of the text, a blank line (the last one in the note
/// separates text from signatures) and 1 to 100 well-formed signature lines,
/// each ending in a newline. Signature lines from other keys (a different
/// name or key ID) are ignored, as the spec requires. Every signature line
/// from the given key must verify, and at least one must be present.
pub(crate) fn open_note(signed: &str, name: &str, public_key: &VerifyingKey) -> Result<String, NoteError> {
    if signed.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge);
    }
    if !is_valid_key_name(name) {
        return Err(NoteError::InvalidKeyName);
    }
    if has_forbidden_control(signed) {
        return Err(NoteError::Malformed);
    }
    let split = signed.rfind("\n\n").ok_or(NoteError::Malformed)?;
    let text = signed
        .get(..split.saturating_add(1))
        .ok_or(NoteError::Malformed)?;
    let block = signed
        .get(split.saturating_add(2)..)
        .ok_or(NoteError::Malformed)?;
    let lines = block
        .strip_suffix('\n')
        .filter(|lines| !lines.is_empty())
        .ok_or(NoteError::Malformed)?;
    if lines.split('\n').count() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures);
    }

    let expected_id = key_id(name, public_key.as_bytes());
    let mut verified = false;
    for line in lines.split('\n') {
        let (line_name, id, signature) = parse_signature_line(line)?;
        if line_name != name || id != expected_id {
            // Unknown key (even if it shares the name or the ID): ignored.
            continue;
        }
        let signature = Signature::from_slice(&signature).map_err(|_| NoteError::InvalidSignature)?;
        public_key
            .verify_strict(text.as_bytes(), &signature)
            .map_err(|_| NoteError::InvalidSignature)?;
        verified = true;
    }
    if !verified {
        return Err(NoteError::NoSignatureFromKey);
    }
    Ok(text.to_owned())
}

/// Splits one signature line (without its newline) into key name, key ID and
/// signature bytes, checking the prefix, the name, the base64 and that at
/// least one signature byte follows the key ID.
fn parse_signature_line(line: &str) -> Result<(&str, [u8; 4], Vec<u8>), NoteError> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(NoteError::MalformedSignatureLine)?;
    let (name, encoded) = rest.split_once(' ').ok_or(NoteError::MalformedSignatureLine)?;
    if !is_valid_key_name(name) {
        return Err(NoteError::MalformedSignatureLine);
    }
    let raw = base64_decode(encoded).map_err(|_| NoteError::MalformedSignatureLine)?;
    let (id, signature) = raw
        .split_first_chunk::<KEY_ID_LEN>()
        .ok_or(NoteError::MalformedSignatureLine)?;
    if signature.is_empty() {
        return Err(NoteError::MalformedSignatureLine);
    }
    Ok((name, *id, signature.to_vec()))
}

/// Encodes `data` as standard base64 (RFC 4648 §4) with `=` padding.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3).saturating_mul(4));
    for chunk in data.chunks(3) {
        let (b0, b1, b2) = match *chunk {
            [a] => (a, 0, 0),
            [a, b] => (a, b, 0),
            [a, b, c] => (a, b, c),
            _ => continue,
        };
        let sextets = [
            b0 >> 2,
            (b0 << 4 | b1 >> 4) & 0x3f,
            (b1 << 2 | b2 >> 6) & 0x3f,
            b2 & 0x3f,
        ];
        // A chunk of n bytes yields n + 1 significant characters.
        let significant = chunk.len().saturating_add(1);
        for (position, sextet) in sextets.iter().enumerate() {
            if position < significant {
                out.push(base64_char(*sextet));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The alphabet character for a 6-bit value (higher bits are ignored).
fn base64_char(sextet: u8) -> char {
    BASE64_ALPHABET
        .get(usize::from(sextet & 0x3f))
        .map_or('A', |&byte| char::from(byte))
}

/// The 6-bit value of a standard base64 alphabet character, or `None` for
/// any other byte (including `=`).
fn base64_value(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes strict, canonical standard base64 with padding.
///
/// Rejects characters outside the alphabet (including whitespace and the
/// URL-safe `-`/`_`), a length that is not a multiple of four, padding
/// anywhere but at the very end, and non-zero unused bits before the
/// padding, so every byte string has exactly one accepted encoding.
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>, NoteError> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(NoteError::InvalidBase64);
    }
    let quads = bytes.len() / 4;
    let mut out = Vec::with_capacity(quads.saturating_mul(3));
    for (number, quad) in bytes.chunks_exact(4).enumerate() {
        let &[c0, c1, c2, c3] = quad else {
            return Err(NoteError::InvalidBase64);
        };
        let is_last = number.saturating_add(1) == quads;
        let v0 = base64_value(c0).ok_or(NoteError::InvalidBase64)?;
        let v1 = base64_value(c1).ok_or(NoteError::InvalidBase64)?;
        match (c2, c3) {
            (b'=', b'=') => {
                if !is_last || v1 & 0x0f != 0 {
                    return Err(NoteError::InvalidBase64);
                }
                out.push(v0 << 2 | v1 >> 4);
            }
            (_, b'=') => {
                let v2 = base64_value(c2).ok_or(NoteError::InvalidBase64)?;
                if !is_last || v2 & 0x03 != 0 {
                    return Err(NoteError::InvalidBase64);
                }
                out.push(v0 << 2 | v1 >> 4);
                out.push(v1 << 4 | v2 >> 2);
            }
            _ => {
                let v2 = base64_value(c2).ok_or(NoteError::InvalidBase64)?;
                let v3 = base64_value(c3).ok_or(NoteError::InvalidBase64)?;
                out.push(v0 << 2 | v1 >> 4);
                out.push(v1 << 4 | v2 >> 2);
                out.push(v2 << 6 | v3);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_core::OsRng;

    // ---------------------------------------------------------------------
    // Known-answer data from golang.org/x/mod/sumdb/note (note_test.go:
    // TestNewVerifier, TestSign, TestOpen). The Go encoded keys are
    // `name+hex(key ID)+base64(0x01 || key)`, with the Ed25519 seed as the
    // private key.
    // ---------------------------------------------------------------------

    const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    // The public key of sum.golang.org (as built into the go command) and
    // three tree notes it signed, as published in the wild; each signature
    // was checked independently before being copied here.
    const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
    const SUMDB_NOTES: [(&str, u64, &str, &str); 3] = [
        (
            "go.sum database tree\n3784599\n7uvxIZ67TZygcq/AehTD8iHYt81Ih+Zl2Y7vXZbfszQ=\n",
            3_784_599,
            "7uvxIZ67TZygcq/AehTD8iHYt81Ih+Zl2Y7vXZbfszQ=",
            "Az3grn972wXskjQrsZhVGc93fTU2uOsmSTiId1Wn1lxDCup5z4ggl1/4gaUqOkMa6cMbYvjB7hn7yemNr7Zqanol/go=",
        ),
        (
            "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n",
            31_700_353,
            "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=",
            "Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=",
        ),
        (
            "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n",
            65_209_736,
            "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=",
            "Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=",
        ),
    ];

    /// Parses a Go `name+hex(id)+base64(0x01 || key)` string into the name,
    /// the key ID and the 32 key bytes, checking the type byte.
    fn parse_go_key(encoded: &str) -> (String, [u8; 4], [u8; 32]) {
        let mut parts = encoded.splitn(3, '+');
        let name = parts.next().unwrap().to_owned();
        let id_hex = parts.next().unwrap();
        let key = base64_decode(parts.next().unwrap()).unwrap();
        assert_eq!(key[0], ED25519_SIGNATURE_TYPE);
        let id = u32::from_str_radix(id_hex, 16).unwrap().to_be_bytes();
        (name, id, key[1..].try_into().unwrap())
    }

    fn peter_signing_key() -> SigningKey {
        let encoded = PETER_SKEY.strip_prefix("PRIVATE+KEY+").unwrap();
        let (name, id, seed) = parse_go_key(encoded);
        assert_eq!(name, "PeterNeumann");
        let key = SigningKey::from_bytes(&seed);
        assert_eq!(key_id(&name, key.verifying_key().as_bytes()), id);
        key
    }

    fn verifying_key(encoded: &str) -> (String, VerifyingKey) {
        let (name, id, key) = parse_go_key(encoded);
        assert_eq!(key_id(&name, &key), id, "key ID of {name}");
        (name, VerifyingKey::from_bytes(&key).unwrap())
    }

    fn random_key() -> SigningKey {
        SigningKey::generate(&mut OsRng)
    }

    /// SHA-256(0x00 || data), the RFC 6962 leaf hash, computed locally so
    /// this module's tests do not depend on the merkle module.
    fn rfc6962_leaf_hash(data: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update([0u8]);
        hasher.update(data);
        hasher.finalize().into()
    }

    // ---------------------------------------------------------------------
    // Base64.
    // ---------------------------------------------------------------------

    #[test]
    fn base64_rfc4648_vectors() {
        // RFC 4648 §10.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        let encoded = base64_encode(&all);
        assert!(encoded.starts_with("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"));
        assert!(encoded.ends_with("+/w=="));
        assert_eq!(base64_decode(&encoded).unwrap(), all);
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn base64_rejects_bad_and_non_canonical_input() {
        for bad in [
            "Zh==", "Zm9=", "Zm9vYh==", "Zm9vYmF=", "AB==", "AAB=", // non-zero unused bits
            "Zg", "Zg=", "Zm9vY", "Z", "Zm9vYg", // bad length / missing padding
            "=Zg=", "Z===", "====", "Zg==Zm9v", "Zm=v", "Zm9v====", "Z=g=", // misplaced padding
            "Zm9v!A==", "Zm 9", "Zm9v\n", " Zm9v", "Zm9v\r\n", "Zm-_", "Zm9\0", // bad characters
            "Zm9vä", "Zm9ä", "éééé", // non-ASCII
        ] {
            assert_eq!(base64_decode(bad), Err(NoteError::InvalidBase64), "{bad:?}");
        }
    }

    // ---------------------------------------------------------------------
    // Key IDs and known-answer signing.
    // ---------------------------------------------------------------------

    #[test]
    fn key_ids_match_go_and_sumdb() {
        let (name, key) = verifying_key(PETER_VKEY);
        assert_eq!(key_id(&name, key.as_bytes()), [0xc7, 0x4f, 0x20, 0xa3]);
        let (name, key) = verifying_key(ENOCH_VKEY);
        assert_eq!(key_id(&name, key.as_bytes()), [0xaf, 0x0c, 0xfe, 0x78]);
        let (name, key) = verifying_key(SUMDB_VKEY);
        assert_eq!(name, "sum.golang.org");
        assert_eq!(key_id(&name, key.as_bytes()), [0x03, 0x3d, 0xe0, 0xae]);
        // The ID depends on the name as well as the key.
        assert_ne!(
            key_id("PeterNeumann2", key.as_bytes()),
            key_id(&name, key.as_bytes())
        );
    }

    #[test]
    fn sign_matches_go_known_answer() {
        let key = peter_signing_key();
        let (_, public) = verifying_key(PETER_VKEY);
        assert_eq!(key.verifying_key(), public);
        let signed = sign_note(GO_TEXT, "PeterNeumann", &key).unwrap();
        // TestSign's expected output, byte for byte.
        let want = format!("{GO_TEXT}\n{PETER_SIG}");
        assert_eq!(signed, want);
        assert_eq!(open_note(&signed, "PeterNeumann", &public).unwrap(), GO_TEXT);
    }

    #[test]
    fn open_matches_go_test_open() {
        let (peter_name, peter) = verifying_key(PETER_VKEY);
        let (enoch_name, enoch) = verifying_key(ENOCH_VKEY);
        let both = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        assert_eq!(open_note(&both, &peter_name, &peter).unwrap(), GO_TEXT);
        assert_eq!(open_note(&both, &enoch_name, &enoch).unwrap(), GO_TEXT);
        // Unknown key, or a known key under another name: nothing verifies.
        let stranger = random_key().verifying_key();
        assert_eq!(
            open_note(&both, "PeterNeumann", &stranger),
            Err(NoteError::NoSignatureFromKey)
        );
        assert_eq!(
            open_note(&both, "PeterNeuman", &peter),
            Err(NoteError::NoSignatureFromKey)
        );
        assert_eq!(
            open_note(&both, &enoch_name, &peter),
            Err(NoteError::NoSignatureFromKey)
        );

        // 100 signatures are accepted, 101 are not.
        let hundred = format!("{GO_TEXT}\n{}", PETER_SIG.repeat(100));
        assert_eq!(open_note(&hundred, &peter_name, &peter).unwrap(), GO_TEXT);
        let too_many = format!("{GO_TEXT}\n{}", PETER_SIG.repeat(101));
        assert_eq!(
            open_note(&too_many, &peter_name, &peter),
            Err(NoteError::TooManySignatures)
        );

        // A known key's signature that does not verify rejects the note.
        let corrupt = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        let note = format!("{GO_TEXT}\n{corrupt}");
        assert_eq!(
            open_note(&note, &peter_name, &peter),
            Err(NoteError::InvalidSignature)
        );
        let note = format!("{GO_TEXT}\n{PETER_SIG}{corrupt}");
        assert_eq!(
            open_note(&note, &peter_name, &peter),
            Err(NoteError::InvalidSignature)
        );

        // Duplicated verified and unverified signatures are fine.
        let enoch_corrupt = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
        let note = format!("{GO_TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{enoch_corrupt}");
        assert_eq!(open_note(&note, &peter_name, &peter).unwrap(), GO_TEXT);

        // Invalid encoded message syntax (TestOpen badMsgs; the "\xff" case
        // cannot be expressed as &str, which is always UTF-8).
        let bad_messages = [
            GO_TEXT.to_owned(),
            format!("{GO_TEXT}\n"),
            format!("{GO_TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{GO_TEXT}\n{PETER_SIG}"),
            format!(
                "{GO_TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
            ),
            format!("{GO_TEXT}\n{PETER_SIG}Unexpected line.\n"),
        ];
        for bad in &bad_messages {
            assert!(
                matches!(
                    open_note(bad, &peter_name, &peter),
                    Err(NoteError::Malformed | NoteError::MalformedSignatureLine)
                ),
                "{bad:?}"
            );
        }

        // A signature with another name or key ID is someone else's: ignored.
        let misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego");
        let note = format!("{GO_TEXT}\n{misnamed}");
        assert_eq!(
            open_note(&note, &peter_name, &peter),
            Err(NoteError::NoSignatureFromKey)
        );
        let wrong_id = PETER_SIG.replace("x08g", "xxxx");
        let note = format!("{GO_TEXT}\n{wrong_id}");
        assert_eq!(
            open_note(&note, &peter_name, &peter),
            Err(NoteError::NoSignatureFromKey)
        );
    }

    #[test]
    fn real_sumdb_checkpoints_verify_and_parse() {
        let (name, key) = verifying_key(SUMDB_VKEY);
        for (text, size, root, signature) in SUMDB_NOTES {
            let signed = format!("{text}\n\u{2014} {name} {signature}\n");
            let opened = open_note(&signed, &name, &key).unwrap();
            assert_eq!(opened, text);
            let checkpoint = Checkpoint::parse_body(&opened).unwrap();
            assert_eq!(checkpoint.origin, "go.sum database tree");
            assert_eq!(checkpoint.size, size);
            assert_eq!(base64_encode(&checkpoint.root), root);
            assert!(checkpoint.extensions.is_empty());
            assert_eq!(checkpoint.body(), text);
            // Any other size in the text breaks the signature.
            let forged = signed.replace(&size.to_string(), &(size + 1).to_string());
            assert_eq!(open_note(&forged, &name, &key), Err(NoteError::InvalidSignature));
        }
    }

    // ---------------------------------------------------------------------
    // Checkpoint bodies.
    // ---------------------------------------------------------------------

    #[test]
    fn checkpoint_matches_go_tlog_format_tree() {
        // golang.org/x/mod sumdb/tlog note_test.go TestFormatTree/TestParseTree.
        let golden = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";
        let checkpoint = Checkpoint {
            origin: "go.sum database tree".to_owned(),
            size: 123_456_789_012,
            root: rfc6962_leaf_hash(b"hello world"),
            extensions: Vec::new(),
        };
        assert_eq!(checkpoint.validate(), Ok(()));
        assert_eq!(checkpoint.body(), golden);
        assert_eq!(Checkpoint::parse_body(golden).unwrap(), checkpoint);
        for bad in [
            "go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
            "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n",
        ] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checkpoint_spec_example_parses() {
        // c2sp.org/tlog-checkpoint example.
        let signed = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let body = &signed[..signed.rfind("\n\n").unwrap() + 1];
        let checkpoint = Checkpoint::parse_body(body).unwrap();
        assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
        assert_eq!(checkpoint.size, 20_852_163);
        assert_eq!(
            base64_encode(&checkpoint.root),
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
        );
        // The signature line is well-formed but from a key we do not hold.
        let key = random_key().verifying_key();
        assert_eq!(
            open_note(signed, "example.com/behind-the-sofa", &key),
            Err(NoteError::NoSignatureFromKey)
        );
    }

    #[test]
    fn checkpoint_parse_is_strict() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let ok = |size: &str, tail: &str| format!("origin\n{size}\n{root}\n{tail}");
        assert_eq!(Checkpoint::parse_body(&ok("0", "")).unwrap().size, 0);
        assert_eq!(
            Checkpoint::parse_body(&ok("18446744073709551615", ""))
                .unwrap()
                .size,
            u64::MAX
        );
        assert_eq!(
            Checkpoint::parse_body(&ok("7", "ext one\n— ext two\n"))
                .unwrap()
                .extensions,
            vec!["ext one".to_owned(), "— ext two".to_owned()]
        );
        let bad = [
            String::new(),
            "\n".to_owned(),
            "origin\n".to_owned(),
            "origin\n1\n".to_owned(),
            format!("origin\n1\n{root}"),
            format!("\n1\n{root}\n"),
            format!("origin\r\n1\n{root}\n"),
            format!("ori\u{7f}gin\n1\n{root}\n"),
            format!("origin\n1\n{root}\r\n"),
            ok("01", ""),
            ok("00", ""),
            ok("+1", ""),
            ok("-1", ""),
            ok(" 1", ""),
            ok("1 ", ""),
            ok("", ""),
            ok("1e3", ""),
            ok("18446744073709551616", ""),
            ok("99999999999999999999999", ""),
            ok("1", "\n"),
            ok("1", "ext\n\n"),
            ok("1", "ext\x01\n"),
            ok("1", "ext"),
            "origin\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".to_owned(),
            "origin\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".to_owned(),
            "origin\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==\n".to_owned(),
            "origin\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2IA\n".to_owned(),
            format!("origin\n1\n {root}\n"),
        ];
        for body in &bad {
            assert!(
                matches!(
                    Checkpoint::parse_body(body),
                    Err(NoteError::MalformedCheckpoint { .. })
                ),
                "{body:?}"
            );
        }
        let huge = format!("{}\n1\n{root}\n", "o".repeat(MAX_NOTE_BYTES));
        assert_eq!(Checkpoint::parse_body(&huge), Err(NoteError::TooLarge));
    }

    #[test]
    fn checkpoint_validate_rejects_unformattable_fields() {
        let good = Checkpoint {
            origin: "example.com/log".to_owned(),
            size: 3,
            root: [7; 32],
            extensions: vec!["x".to_owned()],
        };
        assert_eq!(good.validate(), Ok(()));
        for origin in ["", "a\nb", "a\rb", "tab\there"] {
            let c = Checkpoint {
                origin: origin.to_owned(),
                ..good.clone()
            };
            assert!(c.validate().is_err(), "{origin:?}");
        }
        for ext in ["", "a\nb", "\u{85}"] {
            let c = Checkpoint {
                extensions: vec![ext.to_owned()],
                ..good.clone()
            };
            assert!(c.validate().is_err(), "{ext:?}");
        }
    }

    // ---------------------------------------------------------------------
    // Signing, opening and tampering.
    // ---------------------------------------------------------------------

    #[test]
    fn checkpoint_round_trip_through_signed_note() {
        let key = random_key();
        let checkpoint = Checkpoint {
            origin: "consent.example/ledger".to_owned(),
            size: 42,
            root: rfc6962_leaf_hash(b"root"),
            extensions: vec!["note: extension".to_owned()],
        };
        checkpoint.validate().unwrap();
        let signed = sign_note(&checkpoint.body(), &checkpoint.origin, &key).unwrap();
        let text = open_note(&signed, &checkpoint.origin, &key.verifying_key()).unwrap();
        assert_eq!(Checkpoint::parse_body(&text).unwrap(), checkpoint);
    }

    #[test]
    fn texts_with_blank_lines_round_trip() {
        // c2sp.org/signed-note example: the text itself contains a blank line
        // and the last blank line is the separator.
        let example = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n\n\u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";
        let stranger = random_key().verifying_key();
        assert_eq!(
            open_note(example, "quasimodo.example/salvatore", &stranger),
            Err(NoteError::NoSignatureFromKey)
        );
        let key = random_key();
        for text in [
            "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n",
            "\n",
            "a\n\n",
            "a\n\n\nb\n",
        ] {
            let signed = sign_note(text, "quasimodo.example/salvatore", &key).unwrap();
            assert_eq!(
                open_note(&signed, "quasimodo.example/salvatore", &key.verifying_key()).unwrap(),
                text
            );
        }
    }

    #[test]
    fn multiple_signers_in_any_order() {
        let (a, b) = (random_key(), random_key());
        let text = "log.example\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let from_a = sign_note(text, "log.example", &a).unwrap();
        let from_b = sign_note(text, "witness.example", &b).unwrap();
        let line_a = &from_a[text.len() + 1..];
        let line_b = &from_b[text.len() + 1..];
        for block in [format!("{line_a}{line_b}"), format!("{line_b}{line_a}")] {
            let signed = format!("{text}\n{block}");
            assert_eq!(
                open_note(&signed, "log.example", &a.verifying_key()).unwrap(),
                text
            );
            assert_eq!(
                open_note(&signed, "witness.example", &b.verifying_key()).unwrap(),
                text
            );
            // Right name, other key: the key IDs differ, so both are ignored.
            assert_eq!(
                open_note(&signed, "log.example", &b.verifying_key()),
                Err(NoteError::NoSignatureFromKey)
            );
        }
        // Unknown signatures up to the limit around a valid one.
        let filler = line_b.repeat(99);
        let signed = format!("{text}\n{filler}{line_a}");
        assert_eq!(
            open_note(&signed, "log.example", &a.verifying_key()).unwrap(),
            text
        );
        let signed = format!("{text}\n{filler}{line_b}{line_a}");
        assert_eq!(
            open_note(&signed, "log.example", &a.verifying_key()),
            Err(NoteError::TooManySignatures)
        );
    }

    #[test]
    fn every_kind_of_tampering_is_rejected() {
        let key = random_key();
        let public = key.verifying_key();
        let name = "ledger.example/log";
        let text = "ledger.example/log\n1234\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let signed = sign_note(text, name, &key).unwrap();
        assert_eq!(open_note(&signed, name, &public).unwrap(), text);

        // Edited text: every byte of the text replaced by another printable one.
        for (i, original) in text.char_indices() {
            let replacement = if original == 'x' { 'y' } else { 'x' };
            let mut edited = signed.clone();
            edited.replace_range(i..i + original.len_utf8(), &replacement.to_string());
            assert!(open_note(&edited, name, &public).is_err(), "text byte {i}");
        }
        // Edited signature: every character of the signature line's base64
        // replaced by another alphabet character.
        let sig_start = signed.rfind(' ').unwrap() + 1;
        for i in sig_start..signed.len() - 1 {
            let original = signed.as_bytes()[i];
            for replacement in [b'A', b'B', b'/', b'=', b'g'] {
                if replacement == original {
                    continue;
                }
                let mut edited = signed.clone().into_bytes();
                edited[i] = replacement;
                let edited = String::from_utf8(edited).unwrap();
                assert!(open_note(&edited, name, &public).is_err(), "signature char {i}");
            }
        }
        // Wrong key, wrong name.
        assert_eq!(
            open_note(&signed, name, &random_key().verifying_key()),
            Err(NoteError::NoSignatureFromKey)
        );
        assert_eq!(
            open_note(&signed, "ledger.example/other", &public),
            Err(NoteError::NoSignatureFromKey)
        );
        // Missing blank line.
        let no_blank = signed.replacen("\n\n", "\n", 1);
        assert!(open_note(&no_blank, name, &public).is_err());
        // Every truncation, and an extra line or byte at the end.
        for cut in 0..signed.len() {
            if let Some(prefix) = signed.get(..cut) {
                assert!(open_note(prefix, name, &public).is_err(), "truncated at {cut}");
            }
        }
        for suffix in ["x", "\n", "x\n", "\u{2014} \n", "\n\n"] {
            let extended = format!("{signed}{suffix}");
            assert!(open_note(&extended, name, &public).is_err(), "{suffix:?}");
        }
        // CRLF line endings and other control characters.
        assert_eq!(
            open_note(&signed.replace('\n', "\r\n"), name, &public),
            Err(NoteError::Malformed)
        );
        assert_eq!(
            open_note(&format!("\t{signed}"), name, &public),
            Err(NoteError::Malformed)
        );
        // Signature line variants: hyphen instead of EM DASH, double space,
        // missing space, key ID only, empty base64.
        for line in [
            format!("- {name} AAAAAAAA\n"),
            format!("\u{2014}  {name} AAAAAAAA\n"),
            format!("\u{2014}{name} AAAAAAAA\n"),
            format!("\u{2014} {name}\n"),
            format!("\u{2014} {name} \n"),
            format!("\u{2014} {name} AAAAAA==\n"),
            format!("\u{2014} {name}  AAAAAAAA\n"),
            "\u{2014} a+b AAAAAAAA\n".to_owned(),
            "\u{2014} a\u{a0}b AAAAAAAA\n".to_owned(),
        ] {
            let note = format!("{signed}{line}");
            assert_eq!(
                open_note(&note, name, &public),
                Err(NoteError::MalformedSignatureLine),
                "{line:?}"
            );
        }
        // A signature moved onto another text does not verify.
        let other = sign_note("other\n", name, &key).unwrap();
        let moved = format!("other\n\n{}", &signed[text.len() + 1..]);
        assert_ne!(moved, other);
        assert_eq!(open_note(&moved, name, &public), Err(NoteError::InvalidSignature));
    }

    #[test]
    fn sign_rejects_bad_inputs() {
        let key = random_key();
        for name in [
            "",
            "a b",
            "a+b",
            "a\tb",
            "a\nb",
            "a\u{a0}b",
            "a\u{2003}b",
            "a\x01b",
        ] {
            assert_eq!(
                sign_note("text\n", name, &key),
                Err(NoteError::InvalidKeyName),
                "{name:?}"
            );
            assert_eq!(
                open_note("text\n\n\u{2014} x AAAAAAAA\n", name, &key.verifying_key()),
                Err(NoteError::InvalidKeyName)
            );
        }
        for text in ["", "abc", "abc\n\x01\n", "a\r\n", "a\tb\n"] {
            assert_eq!(
                sign_note(text, "name", &key),
                Err(NoteError::InvalidText),
                "{text:?}"
            );
        }
        let signed = sign_note("text\n", "name", &key).unwrap();
        assert_eq!(sign_note(&signed, "name", &key), Err(NoteError::AlreadySigned));
        assert_eq!(
            sign_note(&format!("{GO_TEXT}\n{PETER_SIG}"), "other", &key),
            Err(NoteError::AlreadySigned)
        );
        // Lines starting with an EM DASH are fine when not after a blank line.
        assert!(sign_note("\u{2014} quote\n", "name", &key).is_ok());

        let big = format!("{}\n", "a".repeat(MAX_NOTE_BYTES - 10));
        assert_eq!(sign_note(&big, "name", &key), Err(NoteError::TooLarge));
        let huge = format!("{}\n\n{PETER_SIG}", "a".repeat(MAX_NOTE_BYTES));
        assert_eq!(
            open_note(&huge, "PeterNeumann", &key.verifying_key()),
            Err(NoteError::TooLarge)
        );
    }

    #[test]
    fn error_messages_are_lowercase_and_quiet() {
        let errors = [
            NoteError::TooLarge,
            NoteError::TooManySignatures,
            NoteError::Malformed,
            NoteError::MalformedSignatureLine,
            NoteError::InvalidKeyName,
            NoteError::InvalidText,
            NoteError::AlreadySigned,
            NoteError::InvalidSignature,
            NoteError::NoSignatureFromKey,
            NoteError::InvalidBase64,
            NoteError::MalformedCheckpoint {
                reason: "size line must be a canonical decimal u64",
            },
        ];
        for error in errors {
            let message = error.to_string();
            let first = message.chars().next().unwrap();
            assert!(first.is_lowercase() || first.is_ascii_digit(), "{message}");
            assert!(!message.ends_with(['.', '!', '?', ':']), "{message}");
        }
    }

    // ---------------------------------------------------------------------
    // Properties.
    // ---------------------------------------------------------------------

    fn checkpoint_strategy() -> impl Strategy<Value = Checkpoint> {
        (
            "\\PC{1,24}",
            any::<u64>(),
            any::<[u8; 32]>(),
            prop::collection::vec("\\PC{1,24}", 0..4),
        )
            .prop_map(|(origin, size, root, extensions)| Checkpoint {
                origin,
                size,
                root,
                extensions,
            })
    }

    /// Strings made from the pieces a note is built of, to reach deep into
    /// the parser more often than uniformly random text does.
    fn noteish_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\n".to_owned()),
            Just("\n\n".to_owned()),
            Just("\u{2014} ".to_owned()),
            Just(" ".to_owned()),
            Just("PeterNeumann".to_owned()),
            Just(PETER_SIG.to_owned()),
            Just(ENOCH_SIG.to_owned()),
            Just(GO_TEXT.to_owned()),
            "[A-Za-z0-9+/=]{0,120}",
            "\\PC{0,8}",
            "[\\x00-\\x1f]",
        ];
        prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_checkpoint_body_round_trips(checkpoint in checkpoint_strategy()) {
            prop_assume!(checkpoint.validate().is_ok());
            let body = checkpoint.body();
            prop_assert_eq!(Checkpoint::parse_body(&body), Ok(checkpoint));
        }

        #[test]
        fn prop_parse_body_never_panics(text in "\\PC*", noteish in noteish_strategy()) {
            let _ = Checkpoint::parse_body(&text);
            let _ = Checkpoint::parse_body(&noteish);
        }

        #[test]
        fn prop_base64_round_trips(data in prop::collection::vec(any::<u8>(), 0..100)) {
            let encoded = base64_encode(&data);
            prop_assert_eq!(encoded.len(), data.len().div_ceil(3) * 4);
            prop_assert_eq!(base64_decode(&encoded), Ok(data));
        }

        #[test]
        fn prop_base64_decode_is_canonical(text in "[A-Za-z0-9+/=]{0,16}") {
            if let Ok(decoded) = base64_decode(&text) {
                prop_assert_eq!(base64_encode(&decoded), text);
            }
        }

        #[test]
        fn prop_base64_decode_never_panics(text in "\\PC*") {
            let _ = base64_decode(&text);
        }

        #[test]
        fn prop_open_note_never_panics(text in "\\PC*", noteish in noteish_strategy()) {
            let (name, key) = verifying_key(PETER_VKEY);
            let _ = open_note(&text, &name, &key);
            let _ = open_note(&noteish, &name, &key);
            let _ = open_note(&noteish, "EnochRoot", &key);
        }

        #[test]
        fn prop_mutated_notes_never_verify(
            position in any::<prop::sample::Index>(),
            replacement in any::<char>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let (name, key) = verifying_key(PETER_VKEY);
            let signed = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");
            let chars: Vec<char> = signed.chars().collect();
            let at = position.index(chars.len());
            let mut mutated = chars.clone();
            mutated[at] = replacement;
            let mutated: String = mutated.into_iter().collect();
            let result = open_note(&mutated, &name, &key);
            // Changing anything in the text or in Peter's line must fail;
            // Enoch's line is unknown to this verifier, so edits there only
            // have to keep the note well-formed to pass.
            let enoch_start = GO_TEXT.chars().count() + 1 + PETER_SIG.chars().count();
            if replacement != chars[at] && at < enoch_start {
                prop_assert!(result.is_err());
            }
            // Cutting anywhere before the end of Peter's line must fail
            // (cutting off Enoch's line alone leaves a valid note).
            let truncated: String = chars[..cut.index(enoch_start)].iter().collect();
            prop_assert!(open_note(&truncated, &name, &key).is_err());
        }
    }
}

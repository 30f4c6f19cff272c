//! Not part of the API: entry points for the fuzz targets in `fuzz/` and the smoke test
//! in `tests/fuzz_smoke.rs`. Enabled by the `fuzzing` feature; may change at any time.
//!
//! Every function here takes arbitrary bytes, hands them to one of the crate's decoders
//! or parsers, and checks what came back. None of them panics: each returns
//!
//! - `Ok(true)` when the decoder accepted the input (and every check on the result held),
//! - `Ok(false)` when it rejected the input with its typed error,
//! - `Err(Violation)` when an invariant broke: a decoder accepted something it should
//!   not have, a value does not round-trip, or two paths that must agree disagree. The
//!   fuzz targets turn that into a crash.
//!
//! Panics inside the decoders themselves are what libFuzzer catches directly.

use std::fmt;

use crate::checkpoint::{self, SignedCheckpoint};
use crate::entry::{self, Actor, Body, DecisionFields, Entry, IndexRecord};
use crate::error::{IntegrityProblem, OpenError, ReadError};
use crate::identifier::{self, Identifier, IdentifierKind, Pseudonym, PseudonymKey};
use crate::ledger::open::{check_format_marker, open_index_record};
use crate::ledger::replay::Replay;
use crate::merkle::{self, MerkleTree};
use crate::note::{self, Checkpoint};
use crate::purpose::{is_valid_purpose_id, LegalBasis, Security, MAX_PURPOSE_ID_LEN};
use crate::receipt::{verify_receipt, Receipt};
use crate::recipient::{Name, Recipient, RecipientScope, MAX_RECIPIENT_NAME_LEN};
use crate::signing::{SigningKey, VerifyingKey};
use crate::state::State;
use crate::store::{self, Bytes};
use crate::subject::{SubjectId, MAX_SUBJECT_ID_LEN};
use crate::time::Timestamp;

/// An invariant that does not hold for some input: what broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation(pub &'static str);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant violated: {}", self.0)
    }
}

impl std::error::Error for Violation {}

/// `Ok(accepted)`, or the invariant an input broke.
pub type Outcome = Result<bool, Violation>;

/// A fuzz entry point.
pub type Target = fn(&[u8]) -> Outcome;

/// Every entry point, by the name of its fuzz target.
pub const TARGETS: &[(&str, Target)] = &[
    ("entry", entry),
    ("stored_metadata", stored_metadata),
    ("decision_record", decision_record),
    ("vault_file", vault_file),
    ("state_snapshot", state_snapshot),
    ("log", log),
    ("signed_note", signed_note),
    ("proofs", proofs),
    ("receipt", receipt),
    ("identifier", identifier),
    ("names", names),
];

fn ensure(holds: bool, what: &'static str) -> Result<(), Violation> {
    if holds {
        Ok(())
    } else {
        Err(Violation(what))
    }
}

/// The key that signs the seed log, its checkpoints and receipts.
fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[0x42; 32])
}

/// The key the seed log rotates to.
fn second_key() -> SigningKey {
    SigningKey::from_bytes(&[0x43; 32])
}

fn verifying_key() -> VerifyingKey {
    signing_key().verifying_key()
}

fn pseudonym_key() -> PseudonymKey {
    PseudonymKey::from_bytes([0x24; 32])
}

// ---- entries ----------------------------------------------------------------------------

/// Stored entry bytes (`entry::decode`): whatever decodes must re-encode to exactly
/// the input (one encoding per value) and hash to the hash reported; then the receipt
/// path (`checkpoint::decode_signed`) and the display of decoded fields run on it.
/// The chain-only reader open uses before a snapshot (`entry::chain_fields`) runs on
/// every input and must agree with the decoder on whatever the decoder accepts.
pub fn entry(data: &[u8]) -> Outcome {
    let fields = entry::chain_fields(data);
    let stored = match entry::decode(data) {
        Ok(stored) => stored,
        Err(problem) => {
            let expected_kind = match data.first() {
                None => matches!(problem, IntegrityProblem::Undecodable(_)),
                Some(&v) if v != entry::FORMAT_VERSION && data.len() <= entry::MAX_ENTRY_LEN => {
                    problem == IntegrityProblem::UnsupportedVersion(v)
                }
                Some(_) => !matches!(problem, IntegrityProblem::UnsupportedVersion(_)),
            };
            ensure(
                expected_kind,
                "entry rejected with the wrong problem for its version byte",
            )?;
            ensure(!problem.to_string().is_empty(), "empty problem message")?;
            return Ok(false);
        }
    };
    let signed =
        entry::encode_signed_part(&stored.entry).map_err(|_| Violation("a decoded entry does not encode"))?;
    ensure(
        signed.len() == stored.signed_len,
        "signed length differs from the re-encoding",
    )?;
    ensure(
        entry::signed_part(data, &stored) == signed.as_slice(),
        "decoded entry re-encodes to other bytes",
    )?;
    ensure(
        entry::seal(signed, &stored.signature) == data,
        "sealed re-encoding differs from the input",
    )?;
    ensure(
        stored.hash == entry::entry_hash(data),
        "hash is not the hash of the input",
    )?;
    let e = &stored.entry;
    let agrees = fields.is_some_and(|f| {
        f.seq == e.seq
            && f.timestamp == e.timestamp.as_millis()
            && f.prev_hash == e.prev_hash
            && f.signed_len == stored.signed_len
            && f.signature == stored.signature
            && f.changes_keys
                == matches!(
                    e.body,
                    Body::Genesis { .. } | Body::KeyRotated { .. } | Body::KeyRevoked { .. }
                )
    });
    ensure(agrees, "the chain-only reader disagrees with the decoder")?;
    // The receipt path: decodes again, then checks the signature (which fails here
    // unless the fuzzer kept a seed's signature intact).
    match checkpoint::decode_signed(data, &verifying_key()) {
        Ok(e) => ensure(e == stored.entry, "receipt path decodes another entry")?,
        Err(crate::AuditError::Mismatch(_)) => {}
        Err(_) => return Err(Violation("receipt path rejects an entry the decoder accepts")),
    }
    describe(&stored.entry);
    Ok(true)
}

/// Formats what exports, history and receipts show of an entry: it must not panic
/// (there is nothing else to check of the text).
fn describe(e: &Entry) {
    let mut text = format!("{} {:?}", e.timestamp, e.actor);
    if let Body::Granted {
        scope,
        expires_at: Some(t),
        ..
    } = &e.body
    {
        text.push_str(&format!("{scope} {t}"));
    }
    std::hint::black_box(text);
}

// ---- stored metadata --------------------------------------------------------------------

/// Stored metadata: the format marker (`check_format_marker`), the head record file
/// (`ledger::head::open`: accepted only at two slots' length, and then the slot it
/// returns is one of the input's, sealed again to the same bytes), the vault digest
/// record (`ledger::vault_digest::matches`: accepted for `sample_vault_digest` exactly
/// when it is that record's bytes, and never for another digest), and an index record
/// (`open_index_record`, the decoder and tag check opening uses). A
/// decoded record must re-encode to the input; it is accepted exactly when its tag is
/// right; the same record with its right tag is accepted, with one tag bit flipped, or
/// under another key or lookup, refused.
pub fn stored_metadata(data: &[u8]) -> Outcome {
    let marker = match check_format_marker(data) {
        Ok(()) => {
            ensure(data == [entry::FORMAT_VERSION], "format marker accepted")?;
            true
        }
        Err(OpenError::UnsupportedFormat { found, supported }) => {
            ensure(
                data == [found] && found != supported,
                "unsupported format names another version",
            )?;
            false
        }
        Err(OpenError::CorruptMetadata(_)) => {
            ensure(data.len() != 1, "a one-byte marker called corrupt")?;
            false
        }
        Err(_) => return Err(Violation("format marker rejected with an unexpected error")),
    };
    let key = pseudonym_key();
    let ledger_id = [7u8; 16];
    let floor = crate::ledger::head::open(data, &key, &ledger_id);
    // The keyless read `Inspector::open` does.
    let claimed = crate::ledger::head::claimed_len(data);
    if let Ok(head) = &floor {
        let sealed = crate::ledger::head::seal(&key, &ledger_id, head);
        ensure(
            data.len() == crate::ledger::head::FILE_LEN
                && data
                    .chunks_exact(crate::ledger::head::SLOT)
                    .any(|slot| slot == sealed),
            "a head record accepted that is not one of the file's slots sealed again",
        )?;
        ensure(
            claimed == Some(head.durable_len),
            "the keyless read of a head record claims another length than the keyed one",
        )?;
    }
    let files = stored_files(data, claimed)?;
    let digest_record = {
        use crate::ledger::vault_digest::{matches, seal};
        let covered = sample_vault_digest(&ledger_id);
        let accepted = matches(data, &key, &covered);
        ensure(
            accepted == (data == seal(&key, &covered)),
            "a vault digest record accepted that is not the record sealed again, or refused",
        )?;
        let other = crate::ledger::vault_digest::Covered {
            digest: crate::store::digest::IndexDigest {
                records: covered.digest.records.wrapping_add(1),
                ..covered.digest
            },
            ..covered
        };
        ensure(
            !(accepted && matches(data, &key, &other)),
            "a vault digest record accepted for two digests",
        )?;
        accepted
    };
    let Some(rec) = IndexRecord::decode(data) else {
        return Ok(marker || floor.is_ok() || digest_record || files);
    };
    ensure(rec.encode() == data, "index record re-encodes to other bytes")?;
    let code = [rec.kind.code()];
    let lookup = Pseudonym([0; 32]);
    let tag = key.index_tag(&IndexRecord::tagged_parts(
        &lookup,
        &rec.subject,
        &code,
        &rec.pseudonym,
    ));
    let open = |k: &PseudonymKey, l: &Pseudonym, bytes: &[u8]| open_index_record(k, l, bytes);
    ensure(
        open(&key, &lookup, data).is_some() == (tag == rec.tag),
        "an index record accepted with a wrong tag, or refused with the right one",
    )?;
    let right = IndexRecord { tag, ..rec }.encode();
    ensure(
        open(&key, &lookup, &right).is_some(),
        "a rightly tagged index record was refused",
    )?;
    let mut flipped = right.clone();
    if let Some(last) = flipped.last_mut() {
        *last ^= 1;
    }
    ensure(
        open(&key, &lookup, &flipped).is_none(),
        "an index record with a flipped tag was accepted",
    )?;
    ensure(
        open(&PseudonymKey::from_bytes([0x25; 32]), &lookup, &right).is_none(),
        "an index record was accepted under another key",
    )?;
    ensure(
        open(&key, &Pseudonym([1; 32]), &right).is_none(),
        "an index record was accepted under another lookup",
    )?;
    Ok(true)
}

/// What opening tells a directory's files by, and the record number read back from the
/// greatest decision-record key, on the same bytes as [`stored_metadata`]: sled's
/// `conf` (`store::is_sled_conf`), the first bytes of a vault (`store::is_vault_start`,
/// and `store::is_mark_or_part_of_it`, a new ledger's mark) and of a head record
/// (`store::is_head_start`), both read by `holds_ledger_files`, and
/// `records::next_record_number`, the parse of `Recorder::new`. `claimed` is what
/// `head::claimed_len` read. Whether any of them recognized the bytes.
fn stored_files(data: &[u8], claimed: Option<u64>) -> Result<bool, Violation> {
    // sled's conf: a few bytes count only beside the ledger's own files, asked then alone.
    let mut asked = false;
    let conf = store::is_sled_conf(data, || {
        asked = true;
        false
    });
    let short = data.len() <= 8;
    ensure(
        asked == short && store::is_sled_conf(data, || true) == (conf || short),
        "sled's conf is told by the ledger's files other than when it holds 8 bytes at most",
    )?;
    if conf {
        let read = data.get(..4096).unwrap_or(data);
        let text = read
            .get(..read.len().saturating_sub(4))
            .and_then(|t| std::str::from_utf8(t).ok());
        ensure(
            text.is_some_and(|t| t.starts_with("segment_size: ") && t.contains("\nversion: 0.34\n")),
            "a conf file taken for sled 0.34's that does not say so",
        )?;
    }
    // The vault's first bytes: the magic, a new ledger's mark (the header alone or a part
    // of it, cut short).
    let vault = store::is_vault_start(data);
    let mark = store::is_mark_or_part_of_it(data);
    let header = store::vault_header();
    ensure(
        !mark || (data.len() <= header.len() && (vault || header.starts_with(data))),
        "a vault taken for a new ledger's mark that is longer, or neither starts nor is part of it",
    )?;
    ensure(
        !(vault && data.len() <= header.len()) || mark,
        "a vault of the header's length starting with its magic is not a mark",
    )?;
    // The head record's first bytes: whatever the keyless read takes for a head record,
    // the sniffer does too.
    let head = store::is_head_start(data);
    ensure(
        claimed.is_none() || head,
        "a head record's length is read from a file not told as a head record",
    )?;
    // The greatest decision-record key: a record number's key, below the plausible
    // limit, whose successor's key reads on.
    let next = crate::records::next_record_number(data);
    if let Some(n) = next {
        let last = n
            .checked_sub(1)
            .ok_or(Violation("record number 0 read as the next"))?;
        ensure(
            last <= crate::records::LAST_PLAUSIBLE_RECORD
                && data.get(1..) == crate::records::every_use_key(last).get(1..),
            "a decision-record key read as another number's, or a number past the limit",
        )?;
        ensure(
            crate::records::next_record_number(&crate::records::every_use_key(n))
                == n.checked_add(1)
                    .filter(|_| n <= crate::records::LAST_PLAUSIBLE_RECORD),
            "the key of the next record number does not read back",
        )?;
    }
    Ok(conf || vault || mark || head || next.is_some())
}

/// What the fuzzed vault digest records are checked against: a ledger of 12 entries
/// with a snapshot tagged all fours, whose vault holds 3 index records.
fn sample_vault_digest(ledger_id: &[u8; 16]) -> crate::ledger::vault_digest::Covered<'_> {
    crate::ledger::vault_digest::Covered {
        ledger_id,
        len: 12,
        head: &[9; 32],
        snapshot: &[4; 32],
        digest: crate::store::digest::IndexDigest {
            records: 3,
            sum: 0x5eed,
        },
    }
}

// ---- decision records -------------------------------------------------------------------

/// The storage key the fuzzed decision records are read from (every-use record 7).
const RECORD_KEY: &[u8] = &[1, 0, 0, 0, 0, 0, 0, 0, 7];

/// The fuzzed decision records' ledger id.
const RECORD_LEDGER: [u8; 16] = [0x24; 16];

fn record_key(key: &PseudonymKey) -> crate::records::TagKey<'_> {
    crate::records::TagKey {
        key,
        ledger: &RECORD_LEDGER,
    }
}

/// A stored decision record (`records::open_record`: tag check, then
/// `DecisionFields::decode`). The first byte is a flag: bit 0 appends the right tag for
/// the rest under the seed pseudonym key, so the fuzzer gets past the HMAC to the
/// decoder. An accepted record re-encodes to exactly its bytes, is consistent (a count,
/// ordered positions and times), and the record with any other tag is refused.
pub fn decision_record(data: &[u8]) -> Outcome {
    let Some((&flags, rest)) = data.split_first() else {
        return Ok(false);
    };
    let pk = pseudonym_key();
    let key = record_key(&pk);
    let stored = if flags & 1 != 0 {
        let mut bytes = rest.to_vec();
        bytes.extend_from_slice(&crate::records::tag(key, RECORD_KEY, rest));
        bytes
    } else {
        rest.to_vec()
    };
    let opened = crate::records::open_record(key, RECORD_KEY, &stored);
    let Some(split) = stored.len().checked_sub(32) else {
        ensure(opened.is_none(), "a record shorter than its tag was accepted")?;
        return Ok(false);
    };
    let (body, tag) = stored.split_at(split);
    let decoded = DecisionFields::decode(body);
    let Some(fields) = opened else {
        // Refused: either the tag is wrong or the body does not decode.
        let tag_ok = crate::records::tag(key, RECORD_KEY, body).as_slice() == tag;
        ensure(
            !tag_ok || decoded.is_none(),
            "a well-tagged valid record was refused",
        )?;
        return Ok(false);
    };
    ensure(
        decoded.as_ref() == Some(&fields),
        "open_record and decode disagree",
    )?;
    ensure(
        fields.encode() == body,
        "a decision record re-encodes to other bytes",
    )?;
    ensure(
        fields.count > 0
            && fields.first_position <= fields.last_position
            && fields.first_at <= fields.last_at,
        "an inconsistent decision record was accepted",
    )?;
    ensure(
        crate::records::seal(key, RECORD_KEY, &fields) == stored,
        "sealing the decoded record gives other bytes",
    )?;
    let mut forged = stored.clone();
    if let Some(last) = forged.last_mut() {
        *last ^= 1;
    }
    ensure(
        crate::records::open_record(key, RECORD_KEY, &forged).is_none(),
        "a record with a wrong tag was accepted",
    )?;
    let other = PseudonymKey::from_bytes([0x25; 32]);
    ensure(
        crate::records::open_record(record_key(&other), RECORD_KEY, &stored).is_none(),
        "a record was accepted under another key",
    )?;
    let elsewhere = crate::records::TagKey {
        key: &pk,
        ledger: &[0x26; 16],
    };
    ensure(
        crate::records::open_record(elsewhere, RECORD_KEY, &stored).is_none(),
        "a record was accepted from another ledger",
    )?;
    ensure(
        crate::records::open_record(key, &[1, 0, 0, 0, 0, 0, 0, 0, 8], &stored).is_none(),
        "a record was accepted under another storage key",
    )?;
    Ok(true)
}

// ---- the vault --------------------------------------------------------------------------

/// The vault file as opening reads it (`store::scan_vault`). The first byte is a
/// flag: bit 0 fixes up the checksum of every slot (so the fuzzer reaches the slot
/// layout behind it), bit 1 puts a valid header in front. The table read must account
/// for every slot exactly once and match the bytes; and the keyless mark that the
/// ledger collected identifiers (`store::holds_index_slot`, read at open when the log
/// is empty) must see a slot of every index record the scan read.
pub fn vault_file(data: &[u8]) -> Outcome {
    const SLOT: usize = 256;
    let Some((&flags, rest)) = data.split_first() else {
        return Ok(false);
    };
    let mut bytes = Vec::with_capacity(rest.len().saturating_add(SLOT));
    if flags & 2 != 0 {
        let mut header = [0u8; SLOT];
        let magic = b"consent-ledger vault v1\n";
        for (h, m) in header.iter_mut().zip(magic) {
            *h = *m;
        }
        bytes.extend_from_slice(&header);
    }
    bytes.extend_from_slice(rest);
    if flags & 1 != 0 {
        for slot in bytes.chunks_exact_mut(SLOT).skip(1) {
            if slot.iter().all(|b| *b == 0) {
                continue;
            }
            let (body, sum) = slot.split_at_mut(SLOT - 16);
            let digest = <sha2::Sha256 as sha2::Digest>::digest(&*body);
            for (s, d) in sum.iter_mut().zip(digest.iter()) {
                *s = *d;
            }
        }
    }
    let marked = crate::store::holds_index_slot(&bytes[..]).unwrap_or(false);
    match store::scan_vault(&bytes) {
        Ok(scan) => {
            scan.consistent_with(&bytes).map_err(Violation)?;
            ensure(
                scan.index_records() == 0 || marked,
                "the keyless mark missed an index record the scan read",
            )?;
            Ok(scan.records() > 0)
        }
        Err(_) => Ok(false),
    }
}

// ---- state snapshots --------------------------------------------------------------------

/// A state snapshot file as opening reads it (`state::snapshot::open`: magic, tag, then
/// the body decoder). The first byte is a flag: bit 0 wraps the rest as a body in the
/// magic and the right tag under the seed pseudonym key, so the fuzzer gets past the
/// HMAC to the decoder. An accepted body writes back to exactly its bytes, its state
/// covers the position it names, and the state answers questions without panicking.
pub fn state_snapshot(data: &[u8]) -> Outcome {
    use crate::state::snapshot;
    let Some((&flags, rest)) = data.split_first() else {
        return Ok(false);
    };
    let key = pseudonym_key();
    let file = if flags & 1 != 0 {
        let mut file = snapshot::MAGIC.to_vec();
        file.extend_from_slice(&snapshot::tag(&key, rest));
        file.extend_from_slice(rest);
        file
    } else {
        rest.to_vec()
    };
    let Some((at, state)) = snapshot::open(&file, &key) else {
        ensure(
            flags & 1 == 0 || snapshot::decode_body(rest).is_none(),
            "a well-tagged valid snapshot was refused",
        )?;
        return Ok(false);
    };
    let body = file.get(snapshot::MAGIC.len() + 32..).unwrap_or(&[]);
    ensure(
        snapshot::encode_body(&state, &at) == body,
        "an accepted snapshot does not write back to its bytes",
    )?;
    ensure(state.len == at.len, "the state does not cover the position named")?;
    let mut forged = file.clone();
    if let Some(b) = forged.get_mut(snapshot::MAGIC.len()) {
        *b ^= 1;
    }
    ensure(
        snapshot::open(&forged, &key).is_none(),
        "a snapshot with a flipped tag bit was accepted",
    )?;
    ensure(
        snapshot::open(&file, &PseudonymKey::from_bytes([0x25; 32])).is_none(),
        "a snapshot was accepted under another key",
    )?;
    ensure(
        snapshot::peek_position(&file) == Some(at),
        "the unchecked position differs from the checked one",
    )?;
    // Questions a loaded state is asked: none may panic, and the tables built while
    // decoding agree with the records (a decision finds each consent a listing shows).
    for (subject, purpose, c) in state.consents() {
        ensure(
            state.consent_for(subject, purpose) == Some(c),
            "a listed consent is not the one decisions find",
        )?;
        ensure(state.knows_subject(subject), "a listed subject is unknown")?;
        let _ = state.erased_at(subject);
        let _ = state.lookups_of(subject);
    }
    let _ = state.grants_with_expiry();
    ensure(
        state.index_finds_every_record(),
        "a search of the identifier index misses a record",
    )?;
    Ok(true)
}

// ---- the log ----------------------------------------------------------------------------

/// Splits fuzz input into stored log items: each is `mode (1) || length (2, BE) || bytes`.
/// Mode 0 stores the item at the next position, mode 1 skips one, mode 2 gives it a
/// key that is not a position, other modes skip `mode` positions.
/// A stored log item: its key (a position, or other bytes) and its value.
type Item = (Result<u64, Vec<u8>>, Vec<u8>);

fn split_log(mut data: &[u8]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut next = 0u64;
    while let Some((&[mode, hi, lo], rest)) = data.split_first_chunk::<3>() {
        let len = usize::from(u16::from_be_bytes([hi, lo])).min(rest.len());
        let (bytes, rest) = rest.split_at(len);
        let key = match mode {
            0 => Ok(next),
            1 => Ok(next.saturating_add(1)),
            2 => Err(vec![mode; 3]),
            m => Ok(next.saturating_add(u64::from(m))),
        };
        if let Ok(k) = key {
            next = k.saturating_add(1);
        }
        out.push((key, bytes.to_vec()));
        data = rest;
    }
    out
}

/// Walks a log as opening does (only the last signature) and as `verify` does (every
/// signature), applying each accepted entry to a decision state. Errors must name a
/// position already reached, and a log that passes the full check must pass the quick one.
fn replay(items: &[Item], verify_all: bool, chained_below: u64) -> Result<Result<u64, u64>, Violation> {
    let mut replay = Replay::new(verify_all);
    let mut state = State::default();
    for (n, (key, bytes)) in items.iter().enumerate() {
        let n = n as u64;
        let raw = (key.clone(), Bytes::from_vec(bytes.clone()));
        let stepped = if n < chained_below {
            // As open does before a state snapshot: the chain only.
            replay.step_chained(raw).map(|()| None)
        } else {
            replay.step(raw).map(Some)
        };
        match stepped {
            Ok(None) => {}
            Ok(Some(stored)) => {
                let lookup = match &stored.entry.body {
                    Body::Collected { pseudonym, .. } => Some(*pseudonym),
                    _ => None,
                };
                state.apply(&stored.entry, lookup);
            }
            Err(ReadError::Integrity(e)) => {
                ensure(e.position <= n, "an error names a position not reached yet")?;
                ensure(!e.to_string().is_empty(), "empty error message")?;
                return Ok(Err(e.position));
            }
            Err(_) => return Err(Violation("replay fails without an integrity error")),
        }
    }
    if let Err(e) = replay.finish() {
        ensure(
            e.position < replay.len(),
            "final check names a position not reached",
        )?;
        return Ok(Err(e.position));
    }
    ensure(
        replay.len() == items.len() as u64,
        "entries accepted but not counted",
    )?;
    for range in replay.untrusted() {
        ensure(
            range.from <= range.to && range.to < replay.len(),
            "untrusted range outside the log",
        )?;
    }
    Ok(Ok(replay.len()))
}

/// A stored log (see `split_log` for how the input is cut into entries), replayed
/// the quick way (opening), the full way (`verify`), and as opening with a state
/// snapshot at half the log (the first half checked by the chain alone).
pub fn log(data: &[u8]) -> Outcome {
    let items = split_log(data);
    let quick = replay(&items, false, 0)?;
    let full = replay(&items, true, 0)?;
    let chained = replay(&items, false, items.len() as u64 / 2)?;
    match (&chained, &full) {
        (Err(_), Ok(_)) => return Err(Violation("a log that verifies fully fails the chain-only check")),
        (Ok(c), Ok(f)) => ensure(c == f, "chain-only and full replay count differently")?,
        (Err(c), Err(f)) => ensure(
            f <= c,
            "full check reports a later position than the chain-only one",
        )?,
        (Ok(_), Err(_)) => {}
    }
    match (quick, full) {
        (Ok(a), Ok(b)) => {
            ensure(a == b, "quick and full replay count differently")?;
            Ok(true)
        }
        (Err(_), Ok(_)) => Err(Violation("a log that verifies fully fails the quick check")),
        (Ok(_), Err(_)) => Ok(false),
        (Err(q), Err(f)) => {
            // The full check finds everything the quick one does, at the same place or
            // earlier (a bad signature in the middle only it sees).
            ensure(f <= q, "full check reports a later position than the quick one")?;
            Ok(false)
        }
    }
}

// ---- signed notes, checkpoints, base64 ----------------------------------------------------

/// The note text the `signed_note` target checks for an input: the first byte is a flag;
/// with bit 0 clear the rest is the text, with it set the rest is a note body (for a
/// checkpoint: origin line, size, root, extension lines) signed here under its first
/// line with the seed key, so the fuzzer gets past the note's signature to what
/// [`SignedCheckpoint::verify`] checks after it (the `revoked` lines). `None` when the
/// rest is not UTF-8, or is a body `note::sign_note` refuses.
pub fn signed_note_text(data: &[u8]) -> Option<String> {
    let (&flags, rest) = data.split_first()?;
    let text = std::str::from_utf8(rest).ok()?;
    if flags & 1 == 0 {
        return Some(text.to_owned());
    }
    let origin = text.split('\n').next().unwrap_or_default();
    note::sign_note(text, origin, signing_key().inner()).ok()
}

/// Signed-note text (see [`signed_note_text`] for the flag byte): `note::open_note`,
/// [`SignedCheckpoint::verify`], `Checkpoint::parse_body` and `note::base64_decode` on
/// each line. Whatever parses must format back to the same text; whatever signs must
/// open back to its text. With the flag set, a checkpoint body the seed key signed is
/// refused by `verify` exactly when a rule on its origin or `revoked` lines is broken
/// (read independently of the parser), and then with `Malformed` or `Mismatch`.
pub fn signed_note(data: &[u8]) -> Outcome {
    let Some(text) = signed_note_text(data) else {
        return Ok(false);
    };
    let text = text.as_str();
    let key = verifying_key();
    if data.first().is_some_and(|flags| flags & 1 != 0) {
        signed_checkpoint_model(data.get(1..).unwrap_or_default(), text, &key)?;
    }
    let mut accepted = false;
    for line in text.split('\n') {
        if let Ok(bytes) = note::base64_decode(line) {
            ensure(note::base64_encode(&bytes) == line, "base64 is not canonical")?;
        }
    }
    if let Ok(cp) = Checkpoint::parse_body(text) {
        ensure(cp.validate().is_ok(), "parsed checkpoint does not validate")?;
        ensure(cp.body() == text, "checkpoint body does not round-trip")?;
        accepted = true;
    }
    if let Ok(body) = note::open_note(text, "fuzz", key.inner()) {
        ensure(text.starts_with(&body), "opened text is not the note's beginning")?;
        accepted = true;
    }
    if let Ok(cp) = SignedCheckpoint::verify(text, &key) {
        ensure(cp.text() == text, "verified checkpoint keeps other text")?;
        ensure(
            cp.origin().starts_with("consent-ledger/") && text.starts_with(cp.origin()),
            "checkpoint origin is not its first line",
        )?;
        // Its extension lines are exactly its revocations, in canonical form.
        let extensions = note::open_note(text, cp.origin(), key.inner())
            .ok()
            .and_then(|body| Checkpoint::parse_body(&body).ok())
            .map(|c| c.extensions);
        let lines: Vec<String> = cp.revocations().iter().map(checkpoint::revocation_line).collect();
        ensure(
            extensions.as_ref() == Some(&lines),
            "revocations do not format back to the checkpoint's extension lines",
        )?;
        ensure(
            cp.revocations().len() <= checkpoint::MAX_REVOCATIONS
                && cp.revocations().iter().all(|r| r.from < cp.size())
                && cp.revoked_from(&key).is_none()
                && lines.windows(2).all(|w| w.first() < w.get(1)),
            "a verified checkpoint lists revocations out of bounds, out of order or of its signer",
        )?;
        accepted = true;
    }
    // Anything that signs must open to the same text.
    if text.len() < 4096 {
        if let Ok(signed) = note::sign_note(text, "fuzz", signing_key().inner()) {
            let opened = note::open_note(&signed, "fuzz", key.inner())
                .map_err(|_| Violation("a freshly signed note does not open"))?;
            ensure(opened == text, "a signed note opens to other text")?;
        }
    }
    Ok(accepted)
}

/// For a `body` signed as `signed` under the seed key: when the body is a checkpoint,
/// [`SignedCheckpoint::verify`] accepts the note exactly when its origin is a consent
/// ledger's and its `revoked` lines obey the rules, and refuses it otherwise as
/// malformed or mismatched (never as a bad note: it is well signed).
fn signed_checkpoint_model(body: &[u8], signed: &str, key: &VerifyingKey) -> Result<(), Violation> {
    let Some(cp) = std::str::from_utf8(body)
        .ok()
        .and_then(|body| Checkpoint::parse_body(body).ok())
    else {
        return Ok(());
    };
    // A ledger's origin: the prefix and a 16-byte id in lower-case hex (docs/format.md).
    let ledger_origin = cp
        .origin
        .strip_prefix("consent-ledger/")
        .is_some_and(|id| id.len() == 32 && id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    let expected = ledger_origin && revocations_obey_the_rules(&cp, key);
    match SignedCheckpoint::verify(signed, key) {
        Ok(_) => ensure(
            expected,
            "a checkpoint verifies whose origin or revoked lines break a rule",
        ),
        Err(crate::AuditError::Malformed(_) | crate::AuditError::Mismatch(_)) => ensure(
            !expected,
            "a well-signed checkpoint whose revoked lines obey the rules is refused",
        ),
        Err(_) => Err(Violation("a well-signed checkpoint is refused as a bad note")),
    }
}

/// The rules on a checkpoint's extension lines, read here independently of
/// `checkpoint::parse_revocations`: at most [`checkpoint::MAX_REVOCATIONS`] lines, each
/// `revoked <key> <position>` in canonical form (the canonical base64 of 32 bytes, a
/// canonical decimal) with the position below the tree size and the key not the
/// signer's, the keys in strictly ascending order of their text.
fn revocations_obey_the_rules(cp: &Checkpoint, signer: &VerifyingKey) -> bool {
    fn read(line: &str) -> Option<(&str, checkpoint::Revocation)> {
        let mut words = line.split(' ');
        let (Some("revoked"), Some(key), Some(from), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return None;
        };
        let r = checkpoint::Revocation {
            key: note::base64_decode(key).ok()?.try_into().ok()?,
            from: from.parse().ok()?,
        };
        (checkpoint::revocation_line(&r) == line).then_some((key, r))
    }
    let Some(lines) = cp.extensions.iter().map(|l| read(l)).collect::<Option<Vec<_>>>() else {
        return false;
    };
    lines.len() <= checkpoint::MAX_REVOCATIONS
        && lines
            .iter()
            .all(|(_, r)| r.from < cp.size && r.key != signer.to_bytes())
        && lines.windows(2).all(|w| match w {
            [(a, _), (b, _)] => a < b,
            _ => true,
        })
}

// ---- Merkle proofs ------------------------------------------------------------------------

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (o, i) in b.iter_mut().zip(data.iter().skip(at)) {
        *o = *i;
    }
    u64::from_be_bytes(b)
}

fn hashes(data: &[u8]) -> Vec<[u8; 32]> {
    data.chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect()
}

/// Merkle proofs. A tree of up to 255 leaves is built from the first bytes; real
/// inclusion and consistency proofs from it must verify, and the same proofs with a
/// changed hash, index or leaf must not. The rest of the input is then checked raw as
/// sizes, index and proof hashes, which must fail cleanly.
pub fn proofs(data: &[u8]) -> Outcome {
    let [n, salt, i, o, flip, ..] = *data else {
        return Ok(false);
    };
    let n = u64::from(n);
    let mut tree = MerkleTree::new();
    let leaves: Vec<merkle::Hash> = (0..n).map(|k| merkle::leaf_hash(&[k as u8, salt])).collect();
    for leaf in &leaves {
        tree.push(*leaf);
    }
    let root = tree.root();
    if n > 0 {
        let index = u64::from(i) % n;
        let proof = tree
            .inclusion_proof(index, n)
            .ok_or(Violation("no inclusion proof for a leaf in the tree"))?;
        let leaf = leaves.get(index as usize).copied().unwrap_or_default();
        merkle::verify_inclusion(index, n, &leaf, &proof, &root)
            .map_err(|_| Violation("a true inclusion proof does not verify"))?;
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = usize::from(flip) % bad.len();
            if let Some(b) = bad.get_mut(at).and_then(|h| h.get_mut(usize::from(flip) % 32)) {
                *b ^= 1;
            }
            ensure(
                merkle::verify_inclusion(index, n, &leaf, &bad, &root).is_err(),
                "a changed inclusion proof verifies",
            )?;
            let other = (index + 1 + u64::from(flip)) % n;
            ensure(
                other == index || merkle::verify_inclusion(other, n, &leaf, &proof, &root).is_err(),
                "an inclusion proof verifies for another index",
            )?;
        }
        let mut wrong_leaf = leaf;
        if let Some(b) = wrong_leaf.first_mut() {
            *b ^= 1;
        }
        ensure(
            merkle::verify_inclusion(index, n, &wrong_leaf, &proof, &root).is_err(),
            "an inclusion proof verifies another leaf",
        )?;
    }
    let old = u64::from(o) % (n + 1);
    let old_root = tree.root_at(old).ok_or(Violation("no root for a smaller size"))?;
    let proof = tree
        .consistency_proof(old, n)
        .ok_or(Violation("no consistency proof to a smaller size"))?;
    merkle::verify_consistency(old, n, &old_root, &root, &proof)
        .map_err(|_| Violation("a true consistency proof does not verify"))?;
    if !proof.is_empty() {
        let mut bad = proof.clone();
        let at = usize::from(flip) % bad.len();
        if let Some(b) = bad.get_mut(at).and_then(|h| h.get_mut(usize::from(flip) % 32)) {
            *b ^= 0x80;
        }
        ensure(
            merkle::verify_consistency(old, n, &old_root, &root, &bad).is_err(),
            "a changed consistency proof verifies",
        )?;
    }
    // Raw: arbitrary sizes, index and hashes.
    let raw = data.get(5..).unwrap_or(&[]);
    let (a, b, c) = (u64_at(raw, 0), u64_at(raw, 8), u64_at(raw, 16));
    let proof = hashes(raw.get(24..).unwrap_or(&[]));
    let leaf = merkle::leaf_hash(raw);
    let _ = merkle::verify_inclusion(a, b, &leaf, &proof, &root);
    let _ = merkle::verify_consistency(a, b, &old_root, &root, &proof);
    let _ = merkle::verify_consistency(c, b, &root, &root, &proof);
    Ok(true)
}

// ---- receipts -----------------------------------------------------------------------------

/// The seed log's entries, made once (signing them is most of the cost of a receipt
/// built for a fuzz input).
fn cached_seed_log() -> &'static [Vec<u8>] {
    static LOG: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| seed_log().unwrap_or_default())
}

/// A genuine receipt made from the seed log for a fuzz input: the first byte picks the
/// entry (its position modulo the log's length), each further pair of bytes (at most
/// 16) a revocation for the checkpoint of the whole log (the first byte of the pair
/// picks the key: the seed key that signs the checkpoint, the key the log rotates to,
/// or a third; the second the position it is revoked from, modulo the log's length).
/// Returns the receipt and the result [`verify_receipt`] must give for it: refused when
/// the checkpoint revokes its own signer, refused as [`crate::AuditError::RevokedSigner`]
/// when it revokes the entry's signer at or before the entry, else verified. `None`
/// for entries that have no receipt (the genesis, key rotation and revocation).
fn built_receipt(spec: &[u8]) -> Option<(Receipt, Result<(), crate::AuditError>)> {
    let log = cached_seed_log();
    let (&pick, pairs) = spec.split_first()?;
    let index = usize::from(pick) % log.len().max(1);
    let bytes = log.get(index)?;
    let size = log.len() as u64;
    let keys = [
        signing_key().verifying_key(),
        second_key().verifying_key(),
        SigningKey::from_bytes(&[0x44; 32]).verifying_key(),
    ];
    let revocations: Vec<checkpoint::Revocation> = pairs
        .chunks_exact(2)
        .take(16)
        .filter_map(|pair| match *pair {
            [k, from] => Some(checkpoint::Revocation {
                key: keys.get(usize::from(k) % keys.len())?.to_bytes(),
                from: u64::from(from) % size,
            }),
            _ => None,
        })
        .collect();
    let mut tree = MerkleTree::new();
    for entry in log {
        tree.push(merkle::leaf_hash(entry));
    }
    let cp = SignedCheckpoint::sign(&[1; 16], size, tree.root(), &revocations, signing_key().inner()).ok()?;
    let proof = checkpoint::InclusionProof {
        index: index as u64,
        tree_size: size,
        hashes: tree.inclusion_proof(index as u64, size)?,
    };
    // The seed log rotates to the second key at position 7; it signs from position 8.
    let signer = keys.get(usize::from(index > 7))?;
    let r = Receipt::build(bytes, &proof, &cp, signer, "write to dpo@example.com")?;
    let revoked_from = |key: &VerifyingKey| {
        revocations
            .iter()
            .filter(|r| r.key == key.to_bytes())
            .map(|r| r.from)
            .min()
    };
    let expected = if revoked_from(&verifying_key()).is_some() {
        Err(crate::AuditError::Mismatch(
            "checkpoint is signed by a key it lists as revoked",
        ))
    } else if let Some(from) = revoked_from(signer).filter(|from| *from <= index as u64) {
        Err(crate::AuditError::RevokedSigner { revoked_from: from })
    } else {
        Ok(())
    };
    Some((r, expected))
}

/// The receipt JSON the `receipt` target checks for an input: the first byte is a
/// flag; with bit 0 clear the rest is the JSON, with it set the rest picks a genuine
/// receipt made from the seed log (see [`receipt`]). `None` when the rest is not UTF-8,
/// or picks no receipt.
pub fn receipt_json(data: &[u8]) -> Option<String> {
    let (&flags, rest) = data.split_first()?;
    if flags & 1 == 0 {
        return std::str::from_utf8(rest).ok().map(str::to_owned);
    }
    built_receipt(rest).map(|(r, _)| r.to_json())
}

/// Receipts (see [`receipt_json`] for the flag byte): [`Receipt::from_json`], then
/// [`verify_receipt`] under the seed key. A parsed receipt must survive `to_json` /
/// `from_json` (unless its pretty-printed JSON is longer than
/// [`crate::MAX_RECEIPT_JSON_LEN`], which `from_json` refuses); a verified one must say
/// what the receipt says, and its checkpoint must not revoke the entry's signer at or
/// before the entry. With the flag set, the rest
/// picks an entry of the seed log and the `revoked` lines of a checkpoint of the whole
/// log (first byte: the entry's position; then pairs of key and position revoked
/// from), and the receipt for it must verify, or be refused, exactly as the
/// revocations say: refused as [`crate::AuditError::RevokedSigner`] when they revoke
/// the entry's signer at or before the entry.
pub fn receipt(data: &[u8]) -> Outcome {
    let Some((&flags, rest)) = data.split_first() else {
        return Ok(false);
    };
    if flags & 1 == 0 {
        let Ok(json) = std::str::from_utf8(rest) else {
            return Ok(false);
        };
        return receipt_of_json(json);
    }
    let Some((r, expected)) = built_receipt(rest) else {
        return Ok(false);
    };
    ensure(
        verify_receipt(&r, &verifying_key()).map(|_| ()) == expected,
        "a genuine receipt is verified or refused other than its checkpoint's revocations say",
    )?;
    receipt_of_json(&r.to_json())
}

/// The checks of [`receipt`] on receipt JSON.
fn receipt_of_json(json: &str) -> Outcome {
    let Ok(r) = Receipt::from_json(json) else {
        return Ok(false);
    };
    // Pretty-printed, JSON near the size limit may grow past it (indentation): then,
    // and only then, it is refused.
    let printed = r.to_json();
    match Receipt::from_json(&printed) {
        Ok(again) => ensure(again == r, "a receipt does not round-trip through JSON")?,
        Err(crate::AuditError::Malformed(_)) if printed.len() > crate::MAX_RECEIPT_JSON_LEN => {}
        Err(_) => return Err(Violation("a receipt does not re-parse")),
    }
    if let Ok(v) = verify_receipt(&r, &verifying_key()) {
        ensure(
            v.entry_seq == r.entry_seq()
                && v.subject == r.subject()
                && v.action == r.action()
                && v.purpose.as_deref() == r.purpose(),
            "a verified receipt says something else than the receipt",
        )?;
        let signer = r
            .entry_signer()
            .map_err(|_| Violation("a verified receipt has no valid entry signer"))?;
        ensure(
            v.checkpoint
                .revoked_from(&signer)
                .is_none_or(|from| from > v.entry_seq),
            "a receipt verifies for an entry whose signer its checkpoint revokes",
        )?;
    }
    Ok(true)
}

// ---- identifiers and names ------------------------------------------------------------------

/// Identifier parsing: the first byte picks phone, email or device id, the rest is the
/// raw input. Parsing must be idempotent, the bulk path (`identifier::lookup_of_raw`)
/// must agree with it, so must the lanes of audience matching on the input's lines,
/// and errors must stay short.
pub fn identifier(data: &[u8]) -> Outcome {
    let Some((&pick, rest)) = data.split_first() else {
        return Ok(false);
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return Ok(false);
    };
    let kind = match pick % 3 {
        0 => IdentifierKind::Phone,
        1 => IdentifierKind::Email,
        _ => IdentifierKind::DeviceId,
    };
    let _ = IdentifierKind::guess(raw);
    ensure(
        crate::normalize::plain_email_agrees(raw),
        "the one-pass email path disagrees with the general one",
    )?;
    ensure(
        crate::normalize::plain_phone_agrees(raw),
        "the one-pass phone path disagrees with the general one",
    )?;
    let key = pseudonym_key();
    let bulk = identifier::lookup_of_raw(&key, kind, raw);
    // Audience matching's path: the input's lines as rows, hashed sixteen at a time in
    // lanes where they fit one block, must give each row's own pseudonym.
    let rows: Vec<_> = raw.lines().map(|r| (IdentifierKind::guess(r), r)).collect();
    let one_by_one: Vec<_> = rows
        .iter()
        .map(|(k, r)| identifier::lookup_of_raw(&key, *k, r).map(|p| (*k, p)))
        .collect();
    ensure(
        key.lookup_hasher().of_raws_in(rows.iter().copied(), true) == one_by_one,
        "lookups in lanes disagree with one-by-one lookups",
    )?;
    match Identifier::<Security>::parse(kind, raw) {
        Ok(id) => {
            ensure(id.kind() == kind, "parsed as another kind")?;
            let again = Identifier::<Security>::parse(kind, id.normalized())
                .map_err(|_| Violation("a normalized identifier does not parse"))?;
            ensure(
                again.normalized() == id.normalized(),
                "normalizing twice changes the value",
            )?;
            ensure(
                id.same_as(&again),
                "an identifier is not the same as its normalization",
            )?;
            ensure(
                bulk == Some(id.lookup(&key)),
                "bulk lookup disagrees with parsing",
            )?;
            ensure(
                bulk == Some(key.lookup_hmac(kind, id.normalized().as_bytes())),
                "the fast lookup pseudonym is not hmac's",
            )?;
            Ok(true)
        }
        Err(e) => {
            ensure(bulk.is_none(), "bulk lookup accepts what parsing rejects")?;
            ensure(
                e.to_string().len() < 160,
                "error message too long (echoes input?)",
            )?;
            Ok(false)
        }
    }
}

/// Names written to the ledger in clear: [`SubjectId::new`], [`Name::new`] (recipients
/// and operators) and purpose ids ([`is_valid_purpose_id`]). What is accepted must obey
/// the documented rules and survive an entry round trip.
pub fn names(data: &[u8]) -> Outcome {
    let Ok(s) = std::str::from_utf8(data) else {
        return Ok(false);
    };
    let clean = !s.is_empty() && !s.chars().any(char::is_control) && s.trim() == s;
    let mut accepted = false;
    let subject = SubjectId::new(s);
    if let Ok(id) = &subject {
        ensure(
            clean && s.len() <= MAX_SUBJECT_ID_LEN,
            "subject id breaks the name rules",
        )?;
        ensure(
            crate::normalize::email(s).is_err() && crate::normalize::phone(s).is_err(),
            "subject id is an email address or a phone number",
        )?;
        ensure(id.as_str() == s, "subject id changed")?;
        accepted = true;
    }
    let name = Name::new(s);
    match &name {
        Ok(n) => {
            ensure(
                clean && s.len() <= MAX_RECIPIENT_NAME_LEN,
                "name breaks the rules",
            )?;
            ensure(n.as_str() == s, "name changed")?;
            ensure(
                icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().is_normalized(s),
                "name not in NFKC form",
            )?;
            accepted = true;
        }
        Err(e) => ensure(e.field() == "recipient name", "name error names another field")?,
    }
    let purpose_ok = is_valid_purpose_id(s);
    if purpose_ok {
        ensure(
            s.len() <= MAX_PURPOSE_ID_LEN
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
            "purpose id breaks the rules",
        )?;
        accepted = true;
    }
    // Whatever the parsers accept, an entry carrying it encodes and decodes back.
    if let (Ok(subject), Ok(name)) = (subject, name) {
        let purpose = if purpose_ok { s } else { "security" };
        let e = Entry {
            seq: 1,
            timestamp: Timestamp::from_millis(1),
            actor: Actor::Operator(name.clone()),
            prev_hash: [0; 32],
            salt: [0; 16],
            body: Body::Granted {
                subject,
                purpose: purpose.to_owned(),
                scope: RecipientScope::any_of([
                    Recipient::Partner(name.clone()),
                    Recipient::DeveloperApp(name),
                ])
                .map_err(|_| Violation("a scope of valid names is rejected"))?,
                expires_at: None,
            },
        };
        let signed = entry::encode_signed_part(&e)
            .map_err(|_| Violation("an entry of valid names does not encode"))?;
        let back = entry::decode(&entry::seal(signed, &[0; 64]))
            .map_err(|_| Violation("an entry of valid names does not decode"))?;
        ensure(back.entry == e, "an entry of valid names decodes to another")?;
    }
    Ok(accepted)
}

// ---- seeds ----------------------------------------------------------------------------------

fn subject(id: &str) -> Option<SubjectId> {
    SubjectId::new(id).ok()
}

/// A valid signed log: genesis, collections, grants, a withdrawal, an expiry, an
/// erasure, a key rotation (later entries signed by the new key) and a revocation.
fn seed_log() -> Option<Vec<Vec<u8>>> {
    let (k1, k2) = (signing_key(), second_key());
    let user1 = subject("user-1")?;
    let user2 = subject("user-2")?;
    let partner = Recipient::partner("acme").ok()?;
    let app = Recipient::developer_app("app-7").ok()?;
    let bodies = vec![
        (
            Actor::System,
            Body::Genesis {
                ledger_id: [1; 16],
                signing_key: k1.verifying_key().to_bytes(),
                pseudonym_key_check: pseudonym_key().check_value(),
            },
        ),
        (
            Actor::Subject,
            Body::Collected {
                subject: user1.clone(),
                kind: IdentifierKind::Phone,
                pseudonym: Pseudonym([4; 32]),
                purpose: "security".into(),
                basis: LegalBasis::LegitimateInterest,
                scope: RecipientScope::first_party(),
            },
        ),
        (
            Actor::Subject,
            Body::Granted {
                subject: user1.clone(),
                purpose: "partner-sharing".into(),
                scope: RecipientScope::any_of([partner, Recipient::FirstParty]).ok()?,
                expires_at: Some(Timestamp::from_millis(1_800_000_000_000)),
            },
        ),
        (
            Actor::Operator(Name::new("dpo").ok()?),
            Body::Withdrawn {
                subject: user1.clone(),
                purpose: "partner-sharing".into(),
            },
        ),
        (
            Actor::System,
            Body::Expired {
                subject: user1.clone(),
                purpose: "advertising".into(),
            },
        ),
        (
            Actor::Subject,
            Body::Collected {
                subject: user2.clone(),
                kind: IdentifierKind::Email,
                pseudonym: Pseudonym([5; 32]),
                purpose: "analytics".into(),
                basis: LegalBasis::Consent,
                scope: RecipientScope::all_partners(),
            },
        ),
        (Actor::Subject, Body::Erased { subject: user1 }),
        (
            Actor::System,
            Body::KeyRotated {
                new_key: k2.verifying_key().to_bytes(),
                // Signed below, where its position and predecessor are known.
                accept: [0; 64],
            },
        ),
        (
            Actor::System,
            Body::KeyRevoked {
                key: k1.verifying_key().to_bytes(),
                from: 3,
            },
        ),
        (
            Actor::Subject,
            Body::Granted {
                subject: user2,
                purpose: "personalization".into(),
                scope: RecipientScope::only(app),
                expires_at: None,
            },
        ),
    ];
    let mut out = Vec::new();
    let mut prev = [0u8; 32];
    for (seq, (actor, body)) in bodies.into_iter().enumerate() {
        let body = match body {
            Body::KeyRotated { new_key, .. } => Body::KeyRotated {
                new_key,
                accept: k2.accept_rotation(seq as u64, &prev),
            },
            other => other,
        };
        let e = Entry {
            seq: seq as u64,
            timestamp: Timestamp::from_millis(1_700_000_000_000 + seq as u64 * 1000),
            actor,
            prev_hash: prev,
            salt: [seq as u8; 16],
            body,
        };
        let signed = entry::encode_signed_part(&e).ok()?;
        let key = if seq <= 7 { &k1 } else { &k2 };
        let signature = key.sign_entry(&signed);
        let bytes = entry::seal(signed, &signature);
        prev = entry::entry_hash(&bytes);
        out.push(bytes);
    }
    Some(out)
}

/// Bodies of checkpoints of the seed log (`size` entries, root `root`) with `revoked`
/// lines: in order (verified), then out of order, repeated, malformed (not base64, a
/// short key, a position not in canonical decimal, another extension), at or beyond the
/// size, one too many, and one naming the signer itself.
fn checkpoint_bodies(size: u64, root: [u8; 32]) -> Vec<String> {
    let line = |seed: u8, from: u64| {
        checkpoint::revocation_line(&checkpoint::Revocation {
            key: SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes(),
            from,
        })
    };
    let body = |extensions: Vec<String>| {
        Checkpoint {
            origin: checkpoint::origin_of(&[1; 16]),
            size,
            root,
            extensions,
        }
        .body()
    };
    let mut ordered = vec![line(0x43, 2), line(0x44, 0)];
    ordered.sort();
    let swapped: Vec<String> = ordered.iter().rev().cloned().collect();
    let mut bodies = vec![
        body(ordered.clone()),
        body(vec![]),
        body(swapped),
        body(vec![line(0x43, 2), line(0x43, 3)]),
        body(vec!["revoked not-base64 1".to_owned()]),
        body(vec![format!("revoked {} 1", note::base64_encode(&[7; 31]))]),
        body(vec![format!("{}0", line(0x43, 0))]),
        body(vec!["witness 1".to_owned()]),
        body(vec![line(0x43, size)]),
        body(vec![line(0x43, u64::MAX)]),
        body(vec![line(0x42, 0)]),
    ];
    // One line more than the most a checkpoint may carry, in canonical order.
    let mut many: Vec<String> = (0..=checkpoint::MAX_REVOCATIONS)
        .map(|k| {
            let mut key = [0u8; 32];
            for (to, from) in key.iter_mut().zip((k as u16).to_be_bytes()) {
                *to = from;
            }
            checkpoint::revocation_line(&checkpoint::Revocation { key, from: 0 })
        })
        .collect();
    many.sort();
    bodies.push(body(many));
    bodies
}

/// Valid inputs for every target, to start fuzzing from: `(target, bytes)`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let log = seed_log().unwrap_or_default();
    for bytes in &log {
        out.push(("entry", bytes.clone()));
    }
    let mut stored = Vec::new();
    for bytes in &log {
        stored.push(0u8);
        stored.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        stored.extend_from_slice(bytes);
    }
    out.push(("log", stored));
    if let Some(first) = log.first() {
        let mut one = vec![0u8];
        one.extend_from_slice(&(first.len() as u16).to_be_bytes());
        one.extend_from_slice(first);
        out.push(("log", one));
    }

    out.push(("stored_metadata", vec![entry::FORMAT_VERSION]));
    out.push(("stored_metadata", vec![2]));
    out.push((
        "stored_metadata",
        crate::ledger::vault_digest::seal(&pseudonym_key(), &sample_vault_digest(&[7; 16])),
    ));
    // Head records: a ledger's (written at creation, then once more), the same under
    // another key (read by the keyless reader alone), a torn one.
    {
        use crate::ledger::head::{seal, Head};
        let h = |counter| Head {
            counter,
            durable_len: 10 + counter,
            time_floor: 1_700_000_000_000 + counter,
        };
        // Each slot where the writer puts it (by its counter).
        let file = |key: &PseudonymKey, a: Head, b: Head| {
            let mut f = vec![0u8; crate::ledger::head::FILE_LEN];
            for h in [a, b] {
                let at = usize::try_from(h.offset()).unwrap_or(0);
                if let Some(slot) = f.get_mut(at..at + crate::ledger::head::SLOT) {
                    slot.copy_from_slice(&seal(key, &[7; 16], &h));
                }
            }
            f
        };
        let key = pseudonym_key();
        out.push(("stored_metadata", file(&key, h(2), h(1))));
        out.push(("stored_metadata", file(&key, h(2), h(3))));
        out.push((
            "stored_metadata",
            file(&PseudonymKey::from_bytes([0x25; 32]), h(4), h(5)),
        ));
        let mut torn = file(&key, h(2), h(3));
        torn.truncate(crate::ledger::head::SLOT + 20);
        out.push(("stored_metadata", torn));
    }
    // What opening tells a directory by: sled's conf (as sled 0.34 writes it, and as a
    // power cut leaves it), a vault's header alone and a part of it, every-use record
    // keys (the last plausible one, and one past it).
    let mut conf = b"segment_size: 524288\nuse_compression: false\nversion: 0.34\n".to_vec();
    conf.extend_from_slice(&[0x1f, 0x2e, 0x3d, 0x4c]);
    out.push(("stored_metadata", conf));
    out.push(("stored_metadata", vec![]));
    let header = store::vault_header();
    out.push(("stored_metadata", header.to_vec()));
    out.push(("stored_metadata", header.get(..30).unwrap_or_default().to_vec()));
    for n in [
        7,
        crate::records::LAST_PLAUSIBLE_RECORD,
        crate::records::LAST_PLAUSIBLE_RECORD + 1,
    ] {
        out.push(("stored_metadata", crate::records::every_use_key(n).to_vec()));
    }
    if let Some(s) = subject("user-1") {
        let rec = IndexRecord {
            subject: s,
            kind: IdentifierKind::Email,
            pseudonym: Pseudonym([9; 32]),
            tag: [8; 32],
        };
        out.push(("stored_metadata", rec.encode()));
    }

    if let (Some(s), Ok(r)) = (subject("user-1"), Recipient::partner("acme")) {
        let fields = DecisionFields {
            subject: s,
            purpose: "advertising".to_owned(),
            recipient: r,
            basis: LegalBasis::Consent,
            allowed_by: 3,
            collected_at: 2,
            first_position: 4,
            last_position: 9,
            first_at: Timestamp::from_millis(1_700_000_000_000),
            last_at: Timestamp::from_millis(1_700_000_060_000),
            count: 6,
        };
        out.push(("decision_record", [&[1u8][..], &fields.encode()].concat()));
        out.push((
            "decision_record",
            [
                &[0u8][..],
                &crate::records::seal(record_key(&pseudonym_key()), RECORD_KEY, &fields),
            ]
            .concat(),
        ));
    }

    let body = crate::state::snapshot::sample_body();
    out.push(("state_snapshot", [&[1u8][..], &body].concat()));
    let mut file = crate::state::snapshot::MAGIC.to_vec();
    file.extend_from_slice(&crate::state::snapshot::tag(&pseudonym_key(), &body));
    file.extend_from_slice(&body);
    out.push(("state_snapshot", [&[0u8][..], &file].concat()));

    let vault = store::sample_vault_file();
    out.push(("vault_file", [&[0u8][..], &vault].concat()));
    out.push(("vault_file", [&[1u8][..], &vault].concat()));
    out.push((
        "vault_file",
        [&[3u8][..], vault.get(256..).unwrap_or(&[])].concat(),
    ));

    // A checkpoint of the log and a receipt for its third entry.
    let mut tree = MerkleTree::new();
    for bytes in &log {
        tree.push(merkle::leaf_hash(bytes));
    }
    let size = tree.len();
    // Then the same with `revoked` lines (of other keys than the one that signs it: the
    // seed log's own revocation is of that key), and a receipt for the entry at the
    // position one of them names, signed by a key it does not name.
    let revocations = [
        checkpoint::Revocation {
            key: second_key().verifying_key().to_bytes(),
            from: 2,
        },
        checkpoint::Revocation {
            key: SigningKey::from_bytes(&[0x44; 32]).verifying_key().to_bytes(),
            from: 0,
        },
    ];
    // Receipts for entry 2 (signed by the key that signs the checkpoints) and entry 9
    // (signed by the key the log rotates to, which the second checkpoint revokes from
    // position 2: refused as `RevokedSigner`; verified under the first).
    for revoked in [&[][..], &revocations[..]] {
        let Ok(cp) = SignedCheckpoint::sign(&[1; 16], size, tree.root(), revoked, signing_key().inner())
        else {
            continue;
        };
        out.push(("signed_note", [b"\0", cp.text().as_bytes()].concat()));
        for (index, signer) in [(2u64, verifying_key()), (9, second_key().verifying_key())] {
            let (Some(bytes), Some(hashes)) = (log.get(index as usize), tree.inclusion_proof(index, size))
            else {
                continue;
            };
            let proof = checkpoint::InclusionProof {
                index,
                tree_size: size,
                hashes,
            };
            if let Some(r) = Receipt::build(bytes, &proof, &cp, &signer, "write to dpo@example.com") {
                out.push(("receipt", [b"\0", r.to_json().as_bytes()].concat()));
            }
        }
    }
    // Receipts built for the input (flag set): entry 9 with its signer revoked before it
    // and at it, entry 4 with another key revoked, entry 2 under a checkpoint that
    // revokes its own signer, entry 1 under none.
    for spec in [&[9u8, 1, 2][..], &[9, 1, 9, 2, 0], &[4, 1, 0], &[2, 0, 3], &[1]] {
        out.push(("receipt", [&[1u8][..], spec].concat()));
    }
    if let Ok(n) = note::sign_note("hello\nworld\n", "fuzz", signing_key().inner()) {
        out.push(("signed_note", [b"\0", n.as_bytes()].concat()));
    }
    // Checkpoint bodies signed for the input (flag set), with well-formed `revoked`
    // lines and with every kind the checkpoint verifier refuses.
    for body in checkpoint_bodies(size, tree.root()) {
        out.push(("signed_note", [b"\x01", body.as_bytes()].concat()));
    }
    out.push(("proofs", vec![10, 1, 3, 4, 5]));
    out.push(("proofs", vec![255, 9, 200, 100, 77, 0, 0, 0, 0, 0, 0, 0, 3]));

    for (kind, raw) in [
        (0u8, "+1 (555) 010-9999"),
        (1, "Alice.Smith@Example.COM"),
        (2, "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
        (1, "b@bücher.de."),
        (0, "+52 1 55 1234 5678"),
        (0, "+39 (0) 06 1234 5678"),
        (1, "o'brien+news@example.com"),
    ] {
        out.push(("identifier", [&[kind][..], raw.as_bytes()].concat()));
    }
    for s in [
        "user-1",
        "acme",
        "partner-sharing",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
    ] {
        out.push(("names", s.as_bytes().to_vec()));
    }
    out
}

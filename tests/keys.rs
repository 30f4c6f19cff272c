//! Signing keys after a rotation and a revocation: a stolen old key cannot vouch for a
//! shortened log, receipts are not issued for what it may have signed, and it never
//! signs again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use consent_ledger::{
    verify_consistency, verify_receipt, verify_receipt_against, Actor, Analytics, AuditError, Identifier,
    Inspector, IntegrityError, IntegrityProblem, Ledger, ManualClock, OpenError, PartnerSharing,
    Personalization, PseudonymKey, ReadError, Receipt, Recipient, RecipientScope, Recorded, Revocation,
    SignedCheckpoint, SigningKey, SubjectId, Timestamp, UntrustedRange, WriteError, MAX_REVOCATIONS,
};
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

fn open(dir: &std::path::Path, key: &SigningKey, pk: &PseudonymKey, clock: &ManualClock) -> Ledger {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .clock(clock.clone())
        .open()
        .unwrap()
}

/// Opens the ledger in `dir` with `key` and `pk` (on `clock`, or the system clock
/// without one), trusting the signed checkpoint `cp`.
fn open_trusting(
    dir: &std::path::Path,
    key: &SigningKey,
    pk: &PseudonymKey,
    clock: Option<&ManualClock>,
    cp: impl Into<String>,
) -> Result<Ledger, OpenError> {
    let b = Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone());
    match clock {
        Some(c) => b.clock(c.clone()),
        None => b,
    }
    .trusted_checkpoint(cp)
    .open()
}

/// A ledger opened with `k0` on a manual clock at `ms`, a second key `k1` to rotate to,
/// and a subject `s`: what most tests here start from.
struct Setup {
    dir: tempfile::TempDir,
    pk: PseudonymKey,
    clock: ManualClock,
    k0: SigningKey,
    k1: SigningKey,
    s: SubjectId,
    l: Ledger,
}

fn setup(ms: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(ms));
    let (k0, k1) = (SigningKey::generate(), SigningKey::generate());
    let l = open(dir.path(), &k0, &pk, &clock);
    Setup {
        dir,
        pk,
        clock,
        k0,
        k1,
        s: SubjectId::new("s-1").unwrap(),
        l,
    }
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Re-signs a checkpoint's body (origin, size, root) with `key`, as the holder of a
/// stolen old key would.
fn forge_checkpoint(legit: &str, key: &SigningKey) -> String {
    sign_body(body_of(legit), key)
}

/// The note text of a signed checkpoint (its body, final newline included).
fn body_of(signed: &str) -> &str {
    &signed[..signed.find("\n\n").unwrap() + 1]
}

/// Signs a checkpoint body with `key`: C2SP signed note named by the origin (first
/// line), key id = SHA-256(name || '\n' || 0x01 || pk)[..4].
fn sign_body(body: &str, key: &SigningKey) -> String {
    let origin = body.lines().next().unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&key.expose_seed());
    let mut h = Sha256::new();
    h.update(origin.as_bytes());
    h.update([b'\n', 1]);
    h.update(sk.verifying_key().as_bytes());
    let mut raw = h.finalize()[..4].to_vec();
    raw.extend_from_slice(&sk.sign(body.as_bytes()).to_bytes());
    format!("{body}\n\u{2014} {origin} {}\n", b64(&raw))
}

fn truncate_to(dir: &std::path::Path, len: u64) {
    let db = sled_util::open(dir);
    let t = db.open_tree("entries").unwrap();
    while let Some((k, _)) = t.last().unwrap() {
        if u64::from_be_bytes(k.as_ref().try_into().unwrap()) < len {
            break;
        }
        t.remove(k).unwrap();
    }
    db.flush().unwrap();
}

/// A log cut short after a rotation: the checkpoint kept outside (signed with the
/// current key) catches it, and one forged with the old key, which may have been stolen,
/// is refused, whether or not the cut removed the revocation.
#[test]
fn a_checkpoint_signed_by_an_old_key_is_not_trusted() {
    let Setup {
        dir: base,
        pk,
        k0,
        k1,
        s,
        l,
        ..
    } = setup(1);
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap(); // 1
    l.rotate_key(k1.clone()).unwrap(); // 2 (signed by k0)
    let cp3 = l.checkpoint().unwrap();
    assert_eq!(cp3.size(), 3);
    l.revoke_key(k0.verifying_key(), 0).unwrap(); // 3: k0 compromised from 0
    let cp4 = l.checkpoint().unwrap();
    l.withdraw::<Analytics>(&s).unwrap(); // 4
    let cp_full = l.checkpoint().unwrap(); // size 5, signed by k1: kept outside the db
    assert_eq!(cp_full.size(), 5);
    drop(l);
    let opened = |dir: &std::path::Path, cp: String| open_trusting(dir, &k1, &pk, None, cp);
    // Uncut, the current key's checkpoint opens it.
    opened(base.path(), cp_full.text().to_owned()).unwrap();
    for (cut, legit_prefix) in [(4u64, &cp4), (3, &cp3)] {
        let dir = tempfile::tempdir().unwrap();
        sled_util::copy_dir(base.path(), dir.path());
        truncate_to(dir.path(), cut); // the withdrawal (and, for 3, the revocation) is gone
        let e = opened(dir.path(), cp_full.text().to_owned()).unwrap_err();
        assert!(matches!(e, OpenError::Integrity(_)), "{e:?}");
        let forged = forge_checkpoint(legit_prefix.text(), &k0);
        // The head record reports the cut first, whatever checkpoint is given...
        let e = opened(dir.path(), forged.clone()).unwrap_err();
        assert!(
            matches!(&e, OpenError::Integrity(i) if matches!(i.problem, IntegrityProblem::ShorterThanRecorded { .. })),
            "cut {cut}: {e:?}"
        );
        // ...and without it (deleted: not detected), the old key's checkpoint is refused.
        std::fs::remove_file(dir.path().join("head")).unwrap();
        let e = opened(dir.path(), forged).unwrap_err();
        assert!(matches!(e, OpenError::UntrustedCheckpoint), "cut {cut}: {e:?}");
    }
}

/// Two grants of analytics for `s`: one for the first party (`before`), then one for
/// every partner (`g`, the one the revocation tests revoke the key from).
fn two_grants(l: &Ledger, s: &SubjectId) -> (Recorded, Recorded) {
    let before = l
        .grant::<Analytics>(s, RecipientScope::first_party(), None)
        .unwrap();
    let g = l
        .grant::<Analytics>(s, RecipientScope::all_partners(), None)
        .unwrap();
    (before, g)
}

/// Asks for the receipt of entry `seq`, which must be refused because its signer was
/// revoked for it; returns the position the key was revoked from.
fn receipt_refused_as_revoked(l: &Ledger, seq: u64) -> u64 {
    match l.receipt(seq, "https://example.com/withdraw") {
        Err(ReadError::Integrity(IntegrityError {
            position,
            problem: IntegrityProblem::RevokedKey { revoked_from },
        })) if position == seq => revoked_from,
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// No receipt for an entry signed by a key at or after the position it was revoked
/// from: the current key would vouch for what the stolen one may have made.
#[test]
fn no_receipt_for_an_entry_signed_by_a_revoked_key() {
    let Setup {
        dir: _dir,
        k0,
        k1,
        s,
        l,
        ..
    } = setup(1);
    let (before, g) = two_grants(&l, &s);
    l.rotate_key(k1.clone()).unwrap();
    l.revoke_key(k0.verifying_key(), g.seq).unwrap();
    let after = l.withdraw::<Analytics>(&s).unwrap();
    let report = l.verify().unwrap();
    assert!(report.untrusted.iter().any(|r| r.from <= g.seq && g.seq <= r.to));
    assert_eq!(receipt_refused_as_revoked(&l, g.seq), g.seq);
    // Before the revoked range, and after the rotation, receipts are issued and verify.
    for seq in [before.seq, after.seq] {
        let r = l.receipt(seq, "https://example.com/withdraw").unwrap();
        verify_receipt(&r, &k1.verifying_key()).unwrap();
    }
}

/// The same when a receipt was issued for the entry before the revocation: the key
/// history a receipt reads is continued from where the last receipt left it (the whole
/// log was read for each), and a revocation since is in it.
#[test]
fn a_receipt_issued_before_a_revocation_is_not_issued_after_it() {
    let Setup {
        dir: _dir,
        pk,
        clock,
        k0,
        k1,
        s,
        l,
    } = setup(1);
    let (before, g) = two_grants(&l, &s);
    let early = l.receipt(g.seq, "x").unwrap();
    verify_receipt(&early, &k0.verifying_key()).unwrap();
    l.rotate_key(k1.clone()).unwrap();
    let rotated = l.withdraw::<Analytics>(&s).unwrap();
    let r = l.receipt(rotated.seq, "x").unwrap();
    assert_eq!(r.entry_signer().unwrap(), k1.verifying_key());
    verify_receipt(&r, &k1.verifying_key()).unwrap();
    l.revoke_key(k0.verifying_key(), g.seq).unwrap();
    assert_eq!(receipt_refused_as_revoked(&l, g.seq), g.seq);
    // Reopened: the key history the open read has the rotation and the revocation.
    drop(l);
    let l = open(_dir.path(), &k1, &pk, &clock);
    assert_eq!(receipt_refused_as_revoked(&l, g.seq), g.seq);
    let r = l.receipt(rotated.seq, "x").unwrap();
    verify_receipt(&r, &k1.verifying_key()).unwrap();
    verify_receipt(&l.receipt(before.seq, "x").unwrap(), &k1.verifying_key()).unwrap();
    // Entries after the open are read by the receipt: k0 revoked from its start now.
    l.revoke_key(k0.verifying_key(), 0).unwrap();
    let after = l
        .grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap();
    assert_eq!(receipt_refused_as_revoked(&l, before.seq), 0);
    verify_receipt(&l.receipt(after.seq, "x").unwrap(), &k1.verifying_key()).unwrap();
}

/// A revoked key is never rotated to again.
#[test]
fn a_revoked_key_cannot_be_rotated_to() {
    let Setup {
        dir,
        pk,
        clock,
        k0,
        k1,
        l,
        ..
    } = setup(1);
    l.rotate_key(k1.clone()).unwrap();
    l.revoke_key(k0.verifying_key(), 0).unwrap();
    assert!(matches!(l.rotate_key(k0.clone()), Err(WriteError::Input(_))));
    drop(l);
    // Also after reopening (the revocation is read back from the log).
    let l = open(dir.path(), &k1, &pk, &clock);
    assert!(matches!(l.rotate_key(k0.clone()), Err(WriteError::Input(_))));
    assert_eq!(l.verifying_key().unwrap(), k1.verifying_key());
}

/// A key revoked twice lists its entries once, from the earliest position, named by
/// the revocation that gave it.
#[test]
fn a_key_revoked_twice_lists_its_entries_once() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let l = open(dir.path(), &k1, &pk, &clock);
    let s = SubjectId::new("user-1").unwrap();
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap();
    l.withdraw::<Analytics>(&s).unwrap();
    l.rotate_key(SigningKey::generate()).unwrap();
    let first = l.revoke_key(k1.verifying_key(), 2).unwrap();
    let wider = l.revoke_key(k1.verifying_key(), 1).unwrap();
    l.revoke_key(k1.verifying_key(), 2).unwrap();
    let report = l.verify().unwrap();
    assert_eq!(report.untrusted.len(), 1, "{:?}", report.untrusted);
    let r = report.untrusted[0];
    assert_eq!((r.from, r.to, r.revoked_by), (1, 3, wider.seq), "{r:?}");
    assert!(first.seq < wider.seq);
}

/// A stored entry written by hand from docs/format.md (actor `System` unless `subject`),
/// signed with `key`; returns its bytes and its hash.
fn forge_entry(
    seq: u64,
    ts: u64,
    subject: bool,
    prev: [u8; 32],
    body: &[u8],
    key: &SigningKey,
) -> (Vec<u8>, [u8; 32]) {
    let mut b = vec![1u8];
    b.extend(seq.to_be_bytes());
    b.extend(ts.to_be_bytes());
    b.extend(if subject { 0u32 } else { 2u32 }.to_be_bytes());
    b.extend(prev);
    b.extend([0x5a; 16]);
    b.extend(body);
    let sk = ed25519_dalek::SigningKey::from_bytes(&key.expose_seed());
    let mut msg = b"consent-ledger entry v1\n".to_vec();
    msg.extend(&b);
    b.extend(sk.sign(&msg).to_bytes());
    let h: [u8; 32] = Sha256::digest(&b).into();
    (b, h)
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_be_bytes());
    out.extend(s.as_bytes());
}

/// The body of a grant of `purpose` to all partners, without expiry.
fn granted_all_partners(subject: &str, purpose: &str) -> Vec<u8> {
    let mut b = 2u32.to_be_bytes().to_vec();
    string(&mut b, subject);
    string(&mut b, purpose);
    b.extend(1u32.to_be_bytes());
    b.push(0);
    b
}

fn key_rotated(new_key: &SigningKey, accept: &[u8; 64]) -> Vec<u8> {
    let mut b = 6u32.to_be_bytes().to_vec();
    b.extend(new_key.verifying_key().to_bytes());
    b.extend(accept);
    b
}

/// A stolen old key used to rewrite everything after a genuine rotation: the forger
/// keeps the log up to just before the rotation, re-grants a consent the person later
/// withdrew, and ends with a rotation to the current key, so that the log would open
/// with it. The new key's acceptance cannot be forged, nor copied from the genuine
/// rotation (it names another position and predecessor); a rotation to a key of the
/// forger's own opens with no key but theirs, and shows it to an auditor.
#[test]
fn a_stolen_old_key_cannot_hand_the_log_to_the_current_key() {
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let (k0, k1, k2) = (
        SigningKey::generate(),
        SigningKey::generate(),
        SigningKey::generate(),
    );
    let alice = SubjectId::new("account-1001").unwrap();
    let email = Identifier::<PartnerSharing>::email("alice@example.com").unwrap();
    let acme = Recipient::partner("acme-ads").unwrap();
    let genuine = tempfile::tempdir().unwrap();
    let l = open(genuine.path(), &k0, &pk, &clock);
    l.collect(&alice, &email, RecipientScope::first_party()).unwrap(); // 1
    l.grant::<PartnerSharing>(&alice, RecipientScope::all_partners(), None)
        .unwrap(); // 2
    assert_eq!(l.rotate_key(k1.clone()).unwrap().seq, 3); // signed by k0, accepted by k1
    l.revoke_key(k0.verifying_key(), 1).unwrap(); // 4
    l.withdraw::<PartnerSharing>(&alice).unwrap(); // 5
    let report = l.verify().unwrap();
    assert_eq!(report.current_key, Some(k1.verifying_key()));
    drop(l);
    let db = sled_util::open(genuine.path());
    let entries = db.open_tree("entries").unwrap();
    let kept = entries.get(2u64.to_be_bytes()).unwrap().unwrap().to_vec();
    let rotation = entries.get(3u64.to_be_bytes()).unwrap().unwrap().to_vec();
    drop(entries);
    drop(db);
    // The genuine acceptance: after the header (69 bytes), the tag and the new key.
    let copied: [u8; 64] = rotation[105..169].try_into().unwrap();
    let ts = u64::from_be_bytes(kept[9..17].try_into().unwrap());
    let grant = granted_all_partners("account-1001", "partner-sharing");

    let forged_tails: [(&str, SigningKey, [u8; 64]); 3] = [
        ("the genuine acceptance, copied", k1.clone(), copied),
        ("no acceptance at all", k1.clone(), [0; 64]),
        // A valid acceptance by a key of the forger's own, at the forged position.
        ("a key of the forger's own", k2.clone(), [0; 64]),
    ];
    for (what, to, accept) in forged_tails {
        // A copy of the genuine directory, whose entries 3.. the forger replaces (same
        // length: the head record has nothing to notice).
        let dir = tempfile::tempdir().unwrap();
        sled_util::copy_dir(genuine.path(), dir.path());
        let db = sled_util::open(dir.path());
        let t = db.open_tree("entries").unwrap();
        let mut prev: [u8; 32] = Sha256::digest(&kept).into();
        for seq in 3..=4u64 {
            let (bytes, h) = forge_entry(seq, ts, true, prev, &grant, &k0);
            t.insert(seq.to_be_bytes(), bytes).unwrap();
            prev = h;
        }
        let accept = if what == "a key of the forger's own" {
            let mut msg = b"consent-ledger key accept v1\n".to_vec();
            msg.extend(5u64.to_be_bytes());
            msg.extend(prev);
            msg.extend(to.verifying_key().to_bytes());
            ed25519_dalek::SigningKey::from_bytes(&to.expose_seed())
                .sign(&msg)
                .to_bytes()
        } else {
            accept
        };
        let (bytes, _) = forge_entry(5, ts, false, prev, &key_rotated(&to, &accept), &k0);
        t.insert(5u64.to_be_bytes(), bytes).unwrap();
        db.flush().unwrap();
        drop(t);
        drop(db);
        let opened = Ledger::builder(dir.path())
            .signing_key(k1.clone())
            .pseudonym_key(pk.clone())
            .clock(clock.clone())
            .open()
            // Closed before the auditor reads the directory.
            .map(|l| l.authorize(&email, &acme).map(|u| u.evidence().allowed_by()));
        let audited = Inspector::open(dir.path()).unwrap().verify();
        if what == "a key of the forger's own" {
            assert!(
                matches!(opened, Err(OpenError::WrongSigningKey)),
                "{what}: {:?}",
                opened
            );
            let report = audited.unwrap();
            assert_eq!(
                report.current_key,
                Some(k2.verifying_key()),
                "{what}: the auditor sees the key"
            );
            assert_ne!(report.current_key, Some(k1.verifying_key()));
        } else {
            let refused = |e: &OpenError| {
                matches!(e, OpenError::Integrity(i)
                    if i.position == 5 && i.problem == IntegrityProblem::RotationNotAccepted)
            };
            match opened {
                Err(e) => assert!(refused(&e), "{what}: {e:?}"),
                Ok(authorized) => panic!(
                    "{what}: a log rewritten with the revoked old key opened with the current \
                     key (authorize: {authorized:?})"
                ),
            }
            match audited {
                Err(ReadError::Integrity(i)) => {
                    assert_eq!(
                        (i.position, i.problem),
                        (5, IntegrityProblem::RotationNotAccepted),
                        "{what}"
                    )
                }
                other => panic!("{what}: the auditor's verify gave {other:?}"),
            }
        }
    }
}

/// The receipt for grant `g` (subject `s-1`, analytics to all business partners)
/// assembled by hand from the ledger's public outputs only (entry bytes, inclusion
/// proof, a checkpoint `cp`), naming `signer` as the entry's signer: what anyone
/// holding them can make, whatever `Ledger::receipt` refuses.
fn receipt_by_hand(l: &Ledger, g: &Recorded, cp: &SignedCheckpoint, signer: &SigningKey) -> Receipt {
    let proof = l.inclusion_proof(g.seq, cp.size()).unwrap();
    let bytes = l.entry_bytes(g.seq).unwrap();
    let json = serde_json::json!({
        "version": 1,
        "ledger": cp.origin(),
        "entry_seq": g.seq,
        "timestamp": g.timestamp.to_string(),
        "subject": "s-1",
        "action": "granted",
        "purpose": "analytics",
        "legal_basis": "consent",
        "recipients": ["all business partners"],
        "expires_at": null,
        "how_to_withdraw": "x",
        "entry": b64(&bytes),
        "entry_signer": b64(&signer.verifying_key().to_bytes()),
        "inclusion_proof": {
            "index": proof.index,
            "tree_size": proof.tree_size,
            "hashes": proof.hashes.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        },
        "checkpoint": cp.text(),
    });
    Receipt::from_json(&json.to_string()).unwrap()
}

/// Every part of a receipt is public output of the ledger (entry bytes, inclusion proof,
/// a checkpoint signed by the current key), so whoever holds them can assemble the very
/// receipt `Ledger::receipt` refuses for an entry signed by a revoked key. The
/// checkpoint names the revocation (`revoked <key> <from>`, covered by its signature),
/// and `verify_receipt` refuses the assembled receipt under the current key; entries the
/// key signed before `from` still get receipts that verify.
#[test]
fn a_receipt_assembled_by_hand_for_a_revoked_key_is_refused() {
    let Setup {
        dir,
        pk,
        clock,
        k0,
        k1,
        s,
        l,
        ..
    } = setup(1_700_000_000_000);
    // `g`: the grant the stolen k0 may have made.
    let (before, g) = two_grants(&l, &s);
    l.rotate_key(k1.clone()).unwrap();
    l.revoke_key(k0.verifying_key(), g.seq).unwrap();
    assert!(l.receipt(g.seq, "x").is_err(), "the ledger refuses this receipt");

    // The checkpoint lists the revocation, in the documented form.
    let cp = l.checkpoint().unwrap();
    let line = format!("revoked {} {}\n", b64(&k0.verifying_key().to_bytes()), g.seq);
    assert!(body_of(cp.text()).ends_with(&line), "{}", cp.text());
    assert_eq!(
        cp.revocations(),
        [Revocation {
            key: k0.verifying_key().to_bytes(),
            from: g.seq
        }]
    );
    assert_eq!(cp.revoked_from(&k0.verifying_key()), Some(g.seq));
    assert_eq!(cp.revoked_from(&k1.verifying_key()), None);
    let verified = SignedCheckpoint::verify(cp.text(), &k1.verifying_key()).unwrap();
    assert_eq!(verified.text(), cp.text());

    // Assembled from public outputs only.
    let r = receipt_by_hand(&l, &g, &cp, &k0);
    assert_eq!(r.entry_signer().unwrap(), k0.verifying_key());
    assert_eq!(
        verify_receipt(&r, &k1.verifying_key()),
        Err(AuditError::RevokedSigner { revoked_from: g.seq })
    );

    // Before the revoked position, k0's entry is vouched for, under the same checkpoint.
    let ok = l.receipt(before.seq, "x").unwrap();
    let v = verify_receipt(&ok, &k1.verifying_key()).unwrap();
    assert_eq!(v.checkpoint.text(), cp.text());

    // Reopened, the ledger signs the same checkpoint (the revocation is read back).
    drop(l);
    let l = open(dir.path(), &k1, &pk, &clock);
    assert_eq!(l.checkpoint().unwrap().text(), cp.text());
}

/// `verify_receipt(r, key)` trusts `key`: after a rotation away from a stolen k0 (and its
/// revocation), the thief forges a receipt for a grant that never happened (subject
/// `s-9`, who never appears in the log), with the entry re-signed by k0 and a checkpoint
/// of a made-up tree signed by k0. Checked under k0 it passes: nothing in a receipt can
/// show that k0 was rotated away, so an old key vouches for nothing (documented on
/// `verify_receipt`, `Ledger::rotate_key` and in docs/receipts.md). Under the ledger's
/// current key it is refused; and a fresh checkpoint under the current key lists k0 as
/// revoked and is not consistent with the forged tree, which is how the person finds
/// out.
#[test]
fn a_rotated_away_key_vouches_for_nothing() {
    let Setup {
        dir: _dir,
        k0,
        k1,
        s,
        l,
        ..
    } = setup(1_700_000_000_000);
    let g = l
        .grant::<Analytics>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    // A genuine receipt, issued under k0: the person keeps k0 as the ledger's key.
    let genuine = l.receipt(g.seq, "x").unwrap();
    let held = verify_receipt(&genuine, &k0.verifying_key()).unwrap();
    l.rotate_key(k1.clone()).unwrap();
    l.revoke_key(k0.verifying_key(), 0).unwrap();
    let origin = l.checkpoint().unwrap().origin().to_owned();

    // The thief, with k0: the grant entry for another subject, re-signed.
    let mut bytes = l.entry_bytes(g.seq).unwrap();
    let at = bytes.windows(3).position(|w| w == b"s-1").unwrap();
    bytes[at..at + 3].copy_from_slice(b"s-9");
    let body_len = bytes.len() - 64;
    let sk0 = ed25519_dalek::SigningKey::from_bytes(&k0.expose_seed());
    let mut msg = b"consent-ledger entry v1\n".to_vec();
    msg.extend_from_slice(&bytes[..body_len]);
    let sig = sk0.sign(&msg).to_bytes();
    bytes[body_len..].copy_from_slice(&sig);
    // A tree of g.seq + 1 leaves whose last leaf is that entry.
    let leaf: [u8; 32] = Sha256::new()
        .chain_update([0u8])
        .chain_update(&bytes)
        .finalize()
        .into();
    assert_eq!(g.seq, 1);
    let sibling = [7u8; 32];
    let root: [u8; 32] = Sha256::new()
        .chain_update([1u8])
        .chain_update(sibling)
        .chain_update(leaf)
        .finalize()
        .into();
    let checkpoint = sign_body(&format!("{origin}\n2\n{}\n", b64(&root)), &k0);
    let mut v: serde_json::Value = serde_json::from_str(&genuine.to_json()).unwrap();
    v["subject"] = "s-9".into();
    v["entry"] = b64(&bytes).into();
    v["inclusion_proof"] = serde_json::json!({"index": 1, "tree_size": 2, "hashes": [b64(&sibling)]});
    v["checkpoint"] = checkpoint.clone().into();
    let forged = Receipt::from_json(&v.to_string()).unwrap();

    // Under the key it is checked with, the forgery passes: the verdict rests on that
    // key alone, and k0 is no longer the ledger's key.
    let fooled = verify_receipt(&forged, &k0.verifying_key()).unwrap();
    assert_eq!(fooled.subject, "s-9");
    // Under the ledger's current key it is refused.
    assert!(matches!(
        verify_receipt(&forged, &k1.verifying_key()),
        Err(AuditError::Checkpoint(_))
    ));
    // A fresh checkpoint, checked under the current key, lists the forger's key as
    // revoked from 0, and the forged tree is not a prefix of the ledger's.
    let fresh = SignedCheckpoint::verify(l.checkpoint().unwrap().text(), &k1.verifying_key()).unwrap();
    assert_eq!(fresh.revoked_from(&forged.entry_signer().unwrap()), Some(0));
    let proof = l.consistency_proof(2, fresh.size()).unwrap();
    assert!(matches!(
        verify_consistency(&fooled.checkpoint, &fresh, &proof),
        Err(AuditError::Proof(_))
    ));
    // The genuine receipt's tree is a prefix of the ledger's, but its entry's signer is
    // revoked from 0: the ledger no longer vouches for it either (and refuses a fresh
    // receipt for it).
    verify_consistency(&held.checkpoint, &fresh, &proof).unwrap();
    assert_eq!(fresh.revoked_from(&genuine.entry_signer().unwrap()), Some(0));
    assert!(l.receipt(g.seq, "x").is_err());
}

/// The export and the history mark an entry signed by a key at or after the position it
/// was revoked from, naming the revocation entry, and leave the others unmarked; so does
/// the history of an erased subject (its erasure entry), and `Inspector::entries`.
#[test]
fn the_export_and_history_mark_entries_of_a_revoked_key() {
    let Setup {
        dir, k0, k1, s, l, ..
    } = setup(1_700_000_000_000);
    let s2 = SubjectId::new("s-2").unwrap();
    let before = l
        .grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap(); // 1
    l.grant::<Analytics>(&s2, RecipientScope::first_party(), None)
        .unwrap(); // 2
    let g = l
        .grant::<Analytics>(&s, RecipientScope::all_partners(), None)
        .unwrap(); // 3
    let erased = l.erase(&s2, Actor::System).unwrap(); // 4
    let rotated = l.rotate_key(k1.clone()).unwrap(); // 5, signed by k0
    let revoked = l.revoke_key(k0.verifying_key(), g.seq).unwrap(); // 6
    let after = l
        .grant::<Personalization>(&s, RecipientScope::first_party(), None)
        .unwrap(); // 7
    assert!(l.receipt(g.seq, "x").is_err());
    let range = UntrustedRange {
        from: g.seq,
        to: rotated.seq,
        revoked_by: revoked.seq,
        revoked_from: g.seq,
    };
    assert_eq!(l.verify().unwrap().untrusted, [range]);

    let marks = |h: &[consent_ledger::HistoryEntry]| -> Vec<(u64, Option<UntrustedRange>)> {
        h.iter().map(|e| (e.seq, e.untrusted())).collect()
    };
    assert_eq!(
        marks(&l.history(&s).unwrap()),
        [(before.seq, None), (g.seq, Some(range)), (after.seq, None)]
    );
    assert_eq!(marks(&l.history(&s2).unwrap()), [(erased.seq, Some(range))]);

    let json = l.export_subject(&s, "x").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let origin = l.checkpoint().unwrap().origin().to_owned();
    let analytics = doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dpv:hasPurpose"]["dct:identifier"] == "analytics")
        .unwrap();
    // The status is still the one decisions use; the event it rests on is marked.
    assert_eq!(analytics["dpv:hasConsentStatus"], "dpv:ConsentGiven");
    let parts = analytics["dct:hasPart"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert!(parts[0].get("untrusted").is_none(), "{json}");
    let u = &parts[1]["untrusted"];
    assert_eq!(parts[1]["dct:identifier"], format!("{origin}#{}", g.seq));
    assert_eq!(u["revoked_by"], format!("{origin}#{}", revoked.seq), "{json}");
    assert_eq!(u["from"], format!("{origin}#{}", g.seq));
    assert_eq!(u["to"], format!("{origin}#{}", rotated.seq));
    assert_eq!(json.matches("\"untrusted\"").count(), 1, "{json}");

    drop(l);
    let inspector = Inspector::open(dir.path()).unwrap();
    let entries = inspector.entries(u64::MAX).unwrap();
    let marked: Vec<(u64, Option<UntrustedRange>)> =
        entries.iter().map(|(_, h)| (h.seq, h.untrusted())).collect();
    assert_eq!(
        marked,
        [
            (before.seq, None),
            (2, None),
            (g.seq, Some(range)),
            (erased.seq, Some(range)),
            (after.seq, None)
        ]
    );
    // Below the revocation, nothing is known to be untrusted yet.
    assert!(inspector
        .entries(revoked.seq)
        .unwrap()
        .iter()
        .all(|(_, h)| h.untrusted().is_none()));
}

/// The `revoked` extension lines of a checkpoint, signed by the current key: the
/// canonical form is accepted and read back; anything else (unknown lines, malformed
/// keys or positions, positions beyond the tree, disorder, repeats, the signer itself,
/// too many lines) is refused with a reason, never echoing the input.
#[test]
fn checkpoint_revocation_lines_are_canonical_and_bounded() {
    let Setup {
        dir: _dir,
        k0: k,
        s,
        l,
        ..
    } = setup(1);
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap();
    l.withdraw::<Analytics>(&s).unwrap();
    let cp = l.checkpoint().unwrap();
    assert_eq!(cp.size(), 3);
    // Without revocations, the checkpoint is the three lines of before.
    let body = body_of(cp.text()).to_owned();
    assert_eq!(body.lines().count(), 3, "{}", cp.text());
    assert!(cp.revocations().is_empty());

    let (a, b) = {
        let x = SigningKey::generate().verifying_key().to_bytes();
        let y = SigningKey::generate().verifying_key().to_bytes();
        if b64(&x) < b64(&y) {
            (x, y)
        } else {
            (y, x)
        }
    };
    let (ta, tb) = (b64(&a), b64(&b));
    let with = |lines: &[String]| {
        let mut text = body.clone();
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        sign_body(&text, &k)
    };
    let verify = |lines: &[String]| SignedCheckpoint::verify(&with(lines), &k.verifying_key());

    // Canonical: accepted and read back.
    let ok = verify(&[format!("revoked {ta} 0"), format!("revoked {tb} 2")]).unwrap();
    assert_eq!(
        ok.revocations(),
        [Revocation { key: a, from: 0 }, Revocation { key: b, from: 2 }]
    );

    // A non-canonical base64 of `a`: the last character before the padding with an
    // unused bit set.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let last = alphabet.find(ta.chars().nth(42).unwrap()).unwrap();
    let loose = format!("{}{}=", &ta[..42], alphabet.chars().nth(last | 1).unwrap());
    let own = b64(&k.verifying_key().to_bytes());
    let malformed: Vec<Vec<String>> = vec![
        vec!["unknown extension".into()],
        vec!["revoked".into()],
        vec![format!("revoked {ta}")],
        vec![format!("revoked  {ta} 0")],
        vec![format!("revoked {ta}  0")],
        vec![format!("revoked {ta} 0 ")],
        vec![format!(" revoked {ta} 0")],
        vec![format!("Revoked {ta} 0")],
        vec![format!("revoked {ta} 0 extra")],
        vec![format!("revoked {ta} 00")],
        vec![format!("revoked {ta} +1")],
        vec![format!("revoked {ta} -1")],
        vec![format!("revoked {ta} 3")], // the tree has 3 entries: positions 0..=2
        vec![format!("revoked {ta} 18446744073709551616")],
        vec![format!("revoked {} 0", ta.trim_end_matches('='))],
        vec![format!("revoked {loose} 0")],
        vec![format!("revoked {} 0", b64(&[1u8; 31]))],
        vec![format!("revoked {} 0", b64(&[1u8; 33]))],
        vec![format!("revoked {} 0", hex(&a))],
        // Out of order, repeated.
        vec![format!("revoked {tb} 0"), format!("revoked {ta} 0")],
        vec![format!("revoked {ta} 0"), format!("revoked {ta} 0")],
        vec![format!("revoked {ta} 0"), format!("revoked {ta} 1")],
        // A valid line, then an unknown one.
        vec![format!("revoked {ta} 0"), "origin-like line".into()],
    ];
    for lines in &malformed {
        match verify(lines) {
            Err(AuditError::Malformed(why)) => assert!(!why.contains(&ta), "{why}"),
            other => panic!("{lines:?}: {other:?}"),
        }
    }
    // A line with a control character breaks the note itself.
    assert!(matches!(
        SignedCheckpoint::verify(
            &with(&[format!("revoked {ta}\t0")]).replace('\t', "\u{1}"),
            &k.verifying_key()
        ),
        Err(AuditError::Checkpoint(_))
    ));
    // The signer itself listed as revoked.
    assert!(matches!(
        verify(&[format!("revoked {own} 0")]),
        Err(AuditError::Mismatch(_))
    ));

    // The bound: as many lines as a ledger may revoke keys, and no more.
    let mut many: Vec<String> = (0..=MAX_REVOCATIONS as u32)
        .map(|i| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            key[31] = 0xAA;
            format!("revoked {} 1", b64(&key))
        })
        .collect();
    many.sort();
    assert!(matches!(
        verify(&many),
        Err(AuditError::Malformed("checkpoint: too many revocation lines"))
    ));
    many.pop();
    assert_eq!(verify(&many).unwrap().revocations().len(), MAX_REVOCATIONS);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A newer checkpoint that drops or narrows a revocation an older one lists is refused
/// by `verify_consistency`: a revocation is an entry of the log and cannot go away.
/// (Re-signed with the current key, which only the operator holds: this is the check
/// that the operator's checkpoints agree.)
#[test]
fn a_checkpoint_cannot_drop_a_revocation() {
    let Setup {
        dir,
        pk,
        clock,
        k0,
        k1,
        s,
        l,
        ..
    } = setup(1);
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap(); // 1
    l.rotate_key(k1.clone()).unwrap(); // 2
    l.revoke_key(k0.verifying_key(), 1).unwrap(); // 3
    let older = l.checkpoint().unwrap();
    l.withdraw::<Analytics>(&s).unwrap(); // 4
    let newer = l.checkpoint().unwrap();
    let proof = l.consistency_proof(older.size(), newer.size()).unwrap();
    verify_consistency(&older, &newer, &proof).unwrap();

    let line = format!("revoked {} 1\n", b64(&k0.verifying_key().to_bytes()));
    let key = k1.verifying_key();
    let dropped = sign_body(&body_of(newer.text()).replace(&line, ""), &k1);
    let narrowed = sign_body(
        &body_of(newer.text()).replace(&line, &line.replace(" 1\n", " 2\n")),
        &k1,
    );
    let widened = sign_body(
        &body_of(newer.text()).replace(&line, &line.replace(" 1\n", " 0\n")),
        &k1,
    );
    for (text, refused) in [(&dropped, true), (&narrowed, true), (&widened, false)] {
        let cp = SignedCheckpoint::verify(text, &key).unwrap();
        let verdict = verify_consistency(&older, &cp, &proof);
        if refused {
            assert!(matches!(verdict, Err(AuditError::Mismatch(_))), "{verdict:?}");
        } else {
            verdict.unwrap();
        }
    }
    drop(l);

    // As a trusted checkpoint at open, only the root counts: it pins every entry it
    // covers, the revocations included, and only the current key's holder can sign
    // lines that disagree with it. (One kept from before `revoked` lines existed has
    // none: see `a_trusted_checkpoint_signed_before_revoked_lines_existed_still_opens`.)
    let opened = |cp: &str| open_trusting(dir.path(), &k1, &pk, Some(&clock), cp).map(|_| ());
    for text in [&dropped, &narrowed, &widened, &newer.text().to_owned()] {
        opened(text).unwrap();
    }
}

/// A checkpoint the previous release signed for a ledger that had revoked a key has
/// no `revoked` lines; kept for `trusted_checkpoint`, it still opens the intact ledger
/// (it was refused as `InconsistentWithCheckpoint`, a false alarm of truncation).
#[test]
fn a_trusted_checkpoint_signed_before_revoked_lines_existed_still_opens() {
    let Setup {
        dir,
        pk,
        clock,
        k0,
        k1,
        s,
        l,
        ..
    } = setup(1_700_000_000_000);
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap();
    l.rotate_key(k1.clone()).unwrap();
    l.revoke_key(k0.verifying_key(), 1).unwrap();
    let now = l.checkpoint().unwrap();
    drop(l);
    // What the previous release's Ledger::checkpoint returned for this very log.
    let body: String = body_of(now.text())
        .lines()
        .take(3)
        .map(|x| format!("{x}\n"))
        .collect();
    let kept = sign_body(&body, &k1);
    let old = SignedCheckpoint::verify(&kept, &k1.verifying_key()).unwrap();
    assert_eq!((old.size(), old.root()), (now.size(), now.root()));
    assert!(old.revocations().is_empty());
    open_trusting(dir.path(), &k1, &pk, Some(&clock), kept).unwrap();
}

/// Any checkpoint the current key signed between a rotation and a revocation covers
/// the revoked key's entries without a `revoked` line, and is public output: a receipt
/// assembled with it passes `verify_receipt`, and `verify_receipt_against` a checkpoint
/// signed after the revocation refuses it.
#[test]
fn a_receipt_assembled_with_a_checkpoint_from_before_the_revocation() {
    let Setup {
        dir: _dir,
        k0,
        k1,
        s,
        l,
        ..
    } = setup(1_700_000_000_000);
    let (before, g) = two_grants(&l, &s);
    l.rotate_key(k1.clone()).unwrap();
    let window = l.checkpoint().unwrap();
    let early = l.receipt(before.seq, "x").unwrap();
    l.revoke_key(k0.verifying_key(), g.seq).unwrap();
    assert!(l.receipt(g.seq, "x").is_err(), "the ledger refuses this receipt");
    let latest = l.checkpoint().unwrap();
    assert_eq!(latest.revoked_from(&k0.verifying_key()), Some(g.seq));

    let r = receipt_by_hand(&l, &g, &window, &k0);
    let key = k1.verifying_key();
    // Nothing in it is wrong: its checkpoint was signed before the revocation.
    verify_receipt(&r, &key).unwrap();
    let to_latest = l.consistency_proof(window.size(), latest.size()).unwrap();
    let verdict = verify_receipt_against(&r, &key, &latest, &to_latest);
    assert_eq!(
        verdict.map(|v| v.entry_seq),
        Err(AuditError::RevokedSigner { revoked_from: g.seq })
    );
    // An entry the key signed before `from` still passes; a proof for other sizes, or
    // a checkpoint under another key, does not.
    let early_size = verify_receipt(&early, &key).unwrap().checkpoint.size();
    let from_early = l.consistency_proof(early_size, latest.size()).unwrap();
    verify_receipt_against(&early, &key, &latest, &from_early).unwrap();
    let other_sizes = l.consistency_proof(early_size - 1, latest.size()).unwrap();
    assert!(verify_receipt_against(&early, &key, &latest, &other_sizes).is_err());
    assert!(verify_receipt_against(&r, &k0.verifying_key(), &latest, &to_latest).is_err());
}

/// Every checkpoint lists every revoked key, and verifiers read at most
/// `MAX_REVOCATIONS` lines: a ledger refuses to revoke one key more (revoking a key
/// again stays possible), and its checkpoints keep verifying.
#[test]
fn a_ledger_revokes_at_most_max_revocations_keys() {
    let Setup {
        dir: _dir, k0: k, l, ..
    } = setup(1);
    // Only a key of the ledger may be revoked: each is rotated away from, then revoked.
    let mut keys = Vec::new();
    let mut current = k;
    for _ in 0..=MAX_REVOCATIONS {
        let next = SigningKey::generate();
        l.rotate_key(next.clone()).unwrap();
        keys.push(current.verifying_key());
        current = next;
    }
    for key in &keys[..MAX_REVOCATIONS] {
        l.revoke_key(*key, 0).unwrap();
    }
    let one_more = l.revoke_key(keys[MAX_REVOCATIONS], 0);
    assert!(matches!(one_more, Err(WriteError::Input(_))), "{one_more:?}");
    l.revoke_key(keys[0], 1).unwrap();
    let cp = SignedCheckpoint::verify(l.checkpoint().unwrap().text(), &current.verifying_key()).unwrap();
    assert_eq!(cp.revocations().len(), MAX_REVOCATIONS);
}

/// A key that never signed an entry of the ledger (another ledger's, a copy-paste slip)
/// is refused: revoking it would have "succeeded" and left the key meant trusted. A
/// key the ledger rotated away from is revoked, also after a reopen.
#[test]
fn a_key_that_never_signed_here_cannot_be_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (k0, k1) = (SigningKey::generate(), SigningKey::generate());
    {
        let l = open(dir.path(), &k0, &pk, &clock);
        l.rotate_key(k1.clone()).unwrap();
        let stranger = l.revoke_key(SigningKey::generate().verifying_key(), 0);
        assert!(matches!(stranger, Err(WriteError::Input(_))), "{stranger:?}");
        l.revoke_key(k0.verifying_key(), 1).unwrap();
    }
    let l = open(dir.path(), &k1, &pk, &clock);
    let stranger = l.revoke_key(SigningKey::generate().verifying_key(), 0);
    assert!(matches!(stranger, Err(WriteError::Input(_))), "{stranger:?}");
    l.revoke_key(k0.verifying_key(), 0).unwrap();
    assert_eq!(l.verify().unwrap().untrusted.len(), 1);
}

/// `VerifyReport::keys` counts distinct keys: a key rotated back to counts once (review
/// r77: it counted rotations).
#[test]
fn verify_report_counts_a_key_rotated_back_to_once() {
    let dir = tempfile::tempdir().unwrap();
    let (k0, k1, pk) = (
        SigningKey::generate(),
        SigningKey::generate(),
        PseudonymKey::generate(),
    );
    let l = Ledger::builder(dir.path())
        .signing_key(k0.clone())
        .pseudonym_key(pk)
        .open()
        .unwrap();
    l.rotate_key(k1.clone()).unwrap();
    l.rotate_key(k0.clone()).unwrap();
    let report = l.verify().unwrap();
    assert_eq!(report.current_key, Some(k0.verifying_key()));
    assert_eq!(report.keys, 2, "{report:?}");
}

/// Entries signed by a key after its revocation are not an error of `verify` (the log is
/// intact) but are listed, and `require_trusted` fails on them, as the docs say.
#[test]
fn verify_lists_entries_signed_after_a_revocation_and_require_trusted_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (k0, k1, pk) = (
        SigningKey::generate(),
        SigningKey::generate(),
        PseudonymKey::generate(),
    );
    let l = Ledger::builder(dir.path())
        .signing_key(k0.clone())
        .pseudonym_key(pk)
        .open()
        .unwrap();
    let s = SubjectId::new("user-1").unwrap();
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap(); // 1, k0
    l.rotate_key(k1).unwrap(); // 2, signed by k0
    l.revoke_key(k0.verifying_key(), 1).unwrap(); // 3
    let report = l.verify().unwrap();
    assert_eq!(
        report.untrusted,
        vec![UntrustedRange {
            from: 1,
            to: 2,
            revoked_by: 3,
            revoked_from: 1,
        }]
    );
    let e = report.require_trusted().unwrap_err();
    assert_eq!(e.position, 1);
    assert!(matches!(
        e.problem,
        IntegrityProblem::RevokedKey { revoked_from: 1 }
    ));
}

/// A key revoked from a position before it signed anything (it may have leaked
/// before it was put into use): the refusals name the revocation's position, as the
/// revocation entry, the checkpoint and `verify_receipt` do, not the first entry the
/// key signed after it.
#[test]
fn a_revoked_keys_errors_name_the_position_it_was_revoked_from() {
    let dir = tempfile::tempdir().unwrap();
    let (k0, k1, k2) = (
        SigningKey::generate(),
        SigningKey::generate(),
        SigningKey::generate(),
    );
    let l = Ledger::builder(dir.path())
        .signing_key(k0)
        .pseudonym_key(PseudonymKey::generate())
        .open()
        .unwrap();
    let alice = SubjectId::new("user-1").unwrap();
    l.grant::<Analytics>(&alice, RecipientScope::first_party(), None)
        .unwrap(); // 1
    l.grant::<Analytics>(&alice, RecipientScope::first_party(), None)
        .unwrap(); // 2
    l.rotate_key(k1.clone()).unwrap(); // 3, signed by k0
    let g = l
        .grant::<Analytics>(&alice, RecipientScope::all_partners(), None)
        .unwrap(); // 4, the first entry k1 signs
    l.rotate_key(k2).unwrap(); // 5, by k1
    l.revoke_key(k1.verifying_key(), 2).unwrap();
    assert_eq!(l.checkpoint().unwrap().revoked_from(&k1.verifying_key()), Some(2));
    let report = l.verify().unwrap();
    assert_eq!(
        report.untrusted,
        [UntrustedRange {
            from: g.seq,
            to: 5,
            revoked_by: 6,
            revoked_from: 2,
        }]
    );
    let revoked_from = |e: &IntegrityError| match e.problem {
        IntegrityProblem::RevokedKey { revoked_from } => revoked_from,
        ref other => panic!("{other:?}"),
    };
    let e = report.require_trusted().unwrap_err();
    assert_eq!((e.position, revoked_from(&e)), (g.seq, 2));
    match l.receipt(g.seq, "x").unwrap_err() {
        ReadError::Integrity(e) => assert_eq!((e.position, revoked_from(&e)), (g.seq, 2)),
        other => panic!("{other:?}"),
    }
}

/// The key history that receipts keep (`Inner::receipt_keys`) against a model the tests
/// keep themselves: which key signs from which position, which was revoked from where
/// (review h34, receipts).
mod key_history {
    use consent_ledger::{
        verify_receipt, Analytics, Durability, IntegrityError, IntegrityProblem, Ledger, ManualClock,
        PseudonymKey, ReadError, RecipientScope, SigningKey, Snapshots, SubjectId, Timestamp, VerifyingKey,
        WriteError,
    };

    /// What the test knows about the key history: (key, first position it signs).
    #[derive(Default, Clone)]
    struct Model {
        keys: Vec<(VerifyingKey, u64)>,
        /// (key, revoked from)
        revoked: Vec<(VerifyingKey, u64)>,
        /// Positions of consent entries (grants).
        consents: Vec<u64>,
    }

    impl Model {
        fn signer(&self, seq: u64) -> VerifyingKey {
            self.keys.iter().rev().find(|(_, from)| *from <= seq).unwrap().0
        }

        /// `Ok(signer)`, or `Err(revoked_from)` when the receipt must be refused.
        fn expect(&self, seq: u64) -> Result<VerifyingKey, u64> {
            let signer = self.signer(seq);
            match self
                .revoked
                .iter()
                .filter(|(k, _)| *k == signer)
                .map(|(_, from)| *from)
                .min()
            {
                Some(from) if from <= seq => Err(from),
                _ => Ok(signer),
            }
        }
    }

    fn consent(l: &Ledger, m: &mut Model, i: usize) -> u64 {
        let s = SubjectId::new(&format!("s-{i}")).unwrap();
        let r = l
            .grant::<Analytics>(&s, RecipientScope::first_party(), None)
            .unwrap();
        m.consents.push(r.seq);
        r.seq
    }

    fn rotate(l: &Ledger, m: &mut Model, to: &SigningKey) {
        let r = l.rotate_key(to.clone()).unwrap();
        m.keys.push((to.verifying_key(), r.seq + 1));
    }

    fn revoke(l: &Ledger, m: &mut Model, key: VerifyingKey, from: u64) {
        l.revoke_key(key, from).unwrap();
        m.revoked.push((key, from));
    }

    /// Every consent entry's receipt is what the model says: issued (signed by the
    /// model's signer, verifying under `current`) or refused as revoked from the model's
    /// position.
    fn check_all(l: &Ledger, m: &Model, current: &VerifyingKey, at: &str) {
        l.sync().unwrap();
        for &seq in &m.consents {
            let got = l.receipt(seq, "x");
            match (m.expect(seq), got) {
                (Ok(signer), Ok(r)) => {
                    assert_eq!(r.entry_signer().unwrap(), signer, "{at}: signer of {seq}");
                    verify_receipt(&r, current).unwrap_or_else(|e| panic!("{at}: {seq}: {e}"));
                }
                (
                    Err(from),
                    Err(ReadError::Integrity(IntegrityError {
                        position,
                        problem: IntegrityProblem::RevokedKey { revoked_from },
                    })),
                ) => assert_eq!((position, revoked_from), (seq, from), "{at}: {seq}"),
                (want, got) => panic!("{at}: entry {seq}: model {want:?}, ledger {:?}", got.map(|_| ())),
            }
        }
    }

    fn open_with(
        dir: &std::path::Path,
        key: &SigningKey,
        pk: &PseudonymKey,
        clock: &ManualClock,
        d: Durability,
        snapshots: Snapshots,
    ) -> Ledger {
        Ledger::builder(dir)
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .clock(clock.clone())
            .durability(d)
            .snapshots(snapshots)
            .open()
            .unwrap()
    }

    /// The cached key history gives what the model gives, after rotate, revoke,
    /// rotate-then-revoke, rotate-back, refused key changes (which must change nothing),
    /// and reopening with and without a snapshot, under each durability.
    #[test]
    fn cached_key_history_matches_the_model_through_key_changes_and_reopens() {
        for d in [
            Durability::Immediate,
            Durability::GroupCommit,
            Durability::Relaxed,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let pk = PseudonymKey::generate();
            let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
            let k: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate()).collect();
            let snap = Snapshots::OnClose { min_new_entries: 0 };
            let mut m = Model::default();
            m.keys.push((k[0].verifying_key(), 0));
            let l = open_with(dir.path(), &k[0], &pk, &clock, d, snap);
            let mut i = 0;
            let mut more = |l: &Ledger, m: &mut Model, n: usize| {
                for _ in 0..n {
                    consent(l, m, i);
                    i += 1;
                }
            };
            more(&l, &mut m, 3);
            check_all(&l, &m, &k[0].verifying_key(), "start");
            rotate(&l, &mut m, &k[1]);
            more(&l, &mut m, 2);
            check_all(&l, &m, &k[1].verifying_key(), "rotated");
            // Refused key changes: nothing changes.
            let before = l.len();
            assert!(matches!(l.rotate_key(k[1].clone()), Err(WriteError::Input(_))));
            assert!(matches!(
                l.revoke_key(k[1].verifying_key(), 0),
                Err(WriteError::Input(_))
            ));
            assert!(matches!(
                l.revoke_key(SigningKey::generate().verifying_key(), 0),
                Err(WriteError::Input(_))
            ));
            assert!(matches!(
                l.revoke_key(k[0].verifying_key(), before + 1),
                Err(WriteError::Input(_))
            ));
            assert_eq!(l.len(), before);
            check_all(&l, &m, &k[1].verifying_key(), "refused changes");
            // Revoke k0 from its second consent.
            let from = m.consents[1];
            revoke(&l, &mut m, k[0].verifying_key(), from);
            assert!(matches!(l.rotate_key(k[0].clone()), Err(WriteError::Input(_))));
            more(&l, &mut m, 2);
            check_all(&l, &m, &k[1].verifying_key(), "revoked k0");
            // Rotate, then revoke the key rotated away from.
            rotate(&l, &mut m, &k[2]);
            more(&l, &mut m, 1);
            let k1_last = *m.consents.last().unwrap() - 2;
            revoke(&l, &mut m, k[1].verifying_key(), k1_last);
            check_all(&l, &m, &k[2].verifying_key(), "rotated then revoked k1");
            // Rotate back and forth: k2 -> k3 -> k2.
            rotate(&l, &mut m, &k[3]);
            more(&l, &mut m, 2);
            rotate(&l, &mut m, &k[2]);
            more(&l, &mut m, 1);
            check_all(&l, &m, &k[2].verifying_key(), "rotated back");
            revoke(&l, &mut m, k[3].verifying_key(), 0);
            check_all(&l, &m, &k[2].verifying_key(), "revoked k3 from 0");
            // Reopen without a snapshot, then write one on close and open from it.
            drop(l);
            let l = open_with(dir.path(), &k[2], &pk, &clock, d, Snapshots::Off);
            check_all(&l, &m, &k[2].verifying_key(), "reopened, no snapshot");
            more(&l, &mut m, 1);
            drop(l);
            let l = open_with(dir.path(), &k[2], &pk, &clock, d, snap);
            more(&l, &mut m, 1);
            drop(l);
            let l = open_with(dir.path(), &k[2], &pk, &clock, d, snap);
            check_all(&l, &m, &k[2].verifying_key(), "reopened from a snapshot");
            // A rotation and a revocation after the open, of a key whose entries the open read.
            let k4 = SigningKey::generate();
            rotate(&l, &mut m, &k4);
            more(&l, &mut m, 1);
            revoke(&l, &mut m, k[2].verifying_key(), 0);
            check_all(&l, &m, &k4.verifying_key(), "after the open");
        }
    }

    /// Under concurrency: appends on four threads while a fifth rotates and revokes and a
    /// sixth asks for receipts all along (continuing the cache from wherever it is); then
    /// every receipt is what the model says.
    #[test]
    fn cached_key_history_matches_the_model_after_concurrent_appends_and_receipts() {
        let dir = tempfile::tempdir().unwrap();
        let pk = PseudonymKey::generate();
        let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
        let k: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate()).collect();
        let l = open_with(
            dir.path(),
            &k[0],
            &pk,
            &clock,
            Durability::GroupCommit,
            Snapshots::Off,
        );
        let mut m = Model::default();
        m.keys.push((k[0].verifying_key(), 0));
        let done = std::sync::atomic::AtomicBool::new(false);
        let (seqs, key_model) = std::thread::scope(|s| {
            let writers: Vec<_> = (0..4)
                .map(|t| {
                    let l = &l;
                    s.spawn(move || {
                        (0..40)
                            .map(|i| {
                                let subject = SubjectId::new(&format!("t{t}-{i}")).unwrap();
                                l.grant::<Analytics>(&subject, RecipientScope::first_party(), None)
                                    .unwrap()
                                    .seq
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let reader = s.spawn(|| {
                let mut n = 0u64;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let len = l.len();
                    for seq in (1..len).rev().take(5) {
                        // Issued or refused, never anything else (a key change has
                        // no receipt: `Input`).
                        match l.receipt(seq, "x") {
                            Ok(_)
                            | Err(ReadError::OutOfRange)
                            | Err(ReadError::Input(_))
                            | Err(ReadError::Integrity(IntegrityError {
                                problem: IntegrityProblem::RevokedKey { .. },
                                ..
                            })) => n += 1,
                            Err(e) => panic!("{seq}: {e:?}"),
                        }
                    }
                }
                n
            });
            let mut km = Model::default();
            km.keys.push((k[0].verifying_key(), 0));
            for (i, next) in k.iter().enumerate().skip(1) {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let r = l.rotate_key(next.clone()).unwrap();
                km.keys.push((next.verifying_key(), r.seq + 1));
                std::thread::sleep(std::time::Duration::from_millis(20));
                let prev = k[i - 1].verifying_key();
                let from = r.seq.saturating_sub(3);
                l.revoke_key(prev, from).unwrap();
                km.revoked.push((prev, from));
            }
            let seqs: Vec<u64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(reader.join().unwrap() > 0);
            (seqs, km)
        });
        m.keys = key_model.keys;
        m.revoked = key_model.revoked;
        m.consents = seqs;
        check_all(&l, &m, &k[3].verifying_key(), "after concurrent appends");
        drop(l);
        let l = open_with(
            dir.path(),
            &k[3],
            &pk,
            &clock,
            Durability::GroupCommit,
            Snapshots::Off,
        );
        check_all(&l, &m, &k[3].verifying_key(), "reopened");
    }

    /// A log in which a key rotation goes back to a key the log revoked (written by hand:
    /// `rotate_key` refuses it) does not open. It opened before review h34 (receipts), and
    /// then signed checkpoints with the revoked key listing that key as revoked, which
    /// `SignedCheckpoint::verify` refuses: no receipt it issued ever verified. (b5340f9 did
    /// the same for revocations `revoke_key` refuses.)
    #[test]
    fn a_log_rotating_back_to_a_revoked_key_does_not_open() {
        use ed25519_dalek::Signer;
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().unwrap();
        let pk = PseudonymKey::generate();
        let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
        let (k0, k1) = (SigningKey::generate(), SigningKey::generate());
        let l = open_with(
            dir.path(),
            &k0,
            &pk,
            &clock,
            Durability::Immediate,
            Snapshots::Off,
        );
        let s = SubjectId::new("s-1").unwrap();
        l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
            .unwrap(); // 1, k0
        l.rotate_key(k1.clone()).unwrap(); // 2, k0 -> k1
        l.grant::<Analytics>(&s, RecipientScope::all_partners(), None)
            .unwrap(); // 3, k1
        l.revoke_key(k0.verifying_key(), 1).unwrap(); // 4
        assert!(matches!(l.rotate_key(k0.clone()), Err(WriteError::Input(_))));
        let len = l.len();
        drop(l);
        // Entry 5: a rotation back to k0, signed by k1 and accepted by k0 (as docs/format.md).
        let db = super::sled_util::open(dir.path());
        let t = db.open_tree("entries").unwrap();
        let last = t.get((len - 1).to_be_bytes()).unwrap().unwrap().to_vec();
        let prev: [u8; 32] = Sha256::digest(&last).into();
        let ts = u64::from_be_bytes(last[9..17].try_into().unwrap());
        let k0d = ed25519_dalek::SigningKey::from_bytes(&k0.expose_seed());
        let k1d = ed25519_dalek::SigningKey::from_bytes(&k1.expose_seed());
        let mut accept_msg = b"consent-ledger key accept v1\n".to_vec();
        accept_msg.extend(len.to_be_bytes());
        accept_msg.extend(prev);
        accept_msg.extend(k0d.verifying_key().to_bytes());
        let accept = k0d.sign(&accept_msg).to_bytes();
        let mut b = vec![1u8];
        b.extend(len.to_be_bytes());
        b.extend(ts.to_be_bytes());
        b.extend(2u32.to_be_bytes()); // actor System
        b.extend(prev);
        b.extend([0x5a; 16]);
        b.extend(6u32.to_be_bytes()); // KeyRotated
        b.extend(k0d.verifying_key().to_bytes());
        b.extend(accept);
        let mut msg = b"consent-ledger entry v1\n".to_vec();
        msg.extend(&b);
        b.extend(k1d.sign(&msg).to_bytes());
        t.insert(len.to_be_bytes(), b).unwrap();
        db.flush().unwrap();
        drop(t);
        drop(db);
        let opened = Ledger::builder(dir.path())
            .signing_key(k0.clone())
            .pseudonym_key(pk.clone())
            .clock(clock.clone())
            .open();
        assert!(
            matches!(
                &opened,
                Err(consent_ledger::OpenError::Integrity(IntegrityError {
                    position,
                    problem: IntegrityProblem::InvalidField("rotation to a revoked key"),
                })) if *position == len
            ),
            "{:?}",
            opened.map(|_| ())
        );
    }
}

/// Review h35-d. A log cut back across a key rotation, with the head record deleted
/// (not detected, as documented), is opened by the operator with the current key and
/// the latest checkpoint kept outside the database: the open is refused, but as
/// `WrongSigningKey`, because the signing-key check runs before the trusted checkpoint
/// is looked at. That is the cut the head record reports as a cut whatever key opens
/// (R73-1): an operator told "wrong signing key" after a rotation made because the old
/// key leaked may have destroyed the old key and cannot learn that the log was cut,
/// which is exactly what the trusted checkpoint is kept for. The checkpoint verifies
/// under the key the operator opens with, and the log is shorter than it: `Truncated`.
/// (Now the checkpoint is checked under the key given before the key check.)
#[test]
fn a_cut_across_a_rotation_is_reported_against_the_trusted_checkpoint_as_a_cut() {
    let Setup {
        dir,
        pk,
        k0,
        k1,
        s,
        l,
        ..
    } = setup(1);
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap(); // 1
    l.rotate_key(k1.clone()).unwrap(); // 2 (signed by k0)
    l.withdraw::<Analytics>(&s).unwrap(); // 3
    let cp = l.checkpoint().unwrap(); // size 4, signed by k1
    assert_eq!(cp.size(), 4);
    drop(l);
    // The attacker cuts the log back to before the rotation and deletes the head record.
    truncate_to(dir.path(), 2);
    std::fs::remove_file(dir.path().join("head")).unwrap();
    let e = open_trusting(dir.path(), &k1, &pk, None, cp.text()).unwrap_err();
    assert!(
        matches!(
            &e,
            OpenError::Integrity(IntegrityError {
                position: 2,
                problem: IntegrityProblem::Truncated { checkpoint_size: 4 },
            })
        ),
        "the operator with the current key and its checkpoint is told: {e:?}"
    );
    // (With the old key, the checkpoint does not verify: refused too.)
    let e = open_trusting(dir.path(), &k0, &pk, None, cp.text()).unwrap_err();
    assert!(
        matches!(e, OpenError::UntrustedCheckpoint | OpenError::Integrity(_)),
        "{e:?}"
    );
}

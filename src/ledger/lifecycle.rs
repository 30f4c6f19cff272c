//! Lifecycle: signing-key rotation and revocation, consent expiry and refresh.

use std::time::Duration;

use super::{Ledger, Prepared, Recorded};
use crate::entry::{Actor, Body};
use crate::error::{InputError, WriteError};
use crate::signing::{SigningKey, VerifyingKey};
use crate::state::Consent;
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// A consent that lapses soon (or has lapsed): ask the person again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringConsent {
    /// Whose consent.
    pub subject: SubjectId,
    /// The purpose id.
    pub purpose: String,
    /// The grant entry.
    pub grant: u64,
    /// When it lapses.
    pub expires_at: Timestamp,
}

impl Ledger {
    /// Rotates the signing key: appends an entry, signed with the current key, that
    /// names `new_key` and carries `new_key`'s signature accepting the rotation at this
    /// position (so that an old key, even stolen, cannot hand the log to any key on its
    /// own); every later entry is signed with `new_key`. Reopening the
    /// ledger then requires `new_key`.
    ///
    /// Use it on a schedule, and at once when the current key may be exposed (then also
    /// [`revoke_key`](Ledger::revoke_key) the old one from the position it may have been
    /// misused from).
    ///
    /// The rotation is synced before this returns, whatever the durability setting: a
    /// crash must not lose it once the caller may have destroyed the old key. A
    /// checkpoint is signed with `new_key` only once the rotation is durable (one asked
    /// for meanwhile waits for it); if its sync fails ([`WriteError::NotDurable`]),
    /// none is signed with `new_key` until the ledger is reopened.
    ///
    /// From here on the old key vouches for nothing outside the log: receipts and
    /// checkpoints must be checked under `new_key`'s public key
    /// ([`verify_receipt`](crate::verify_receipt),
    /// [`SignedCheckpoint::verify`](crate::SignedCheckpoint::verify)). Whoever holds the
    /// old key (if it was stolen) can still make receipts and checkpoints that verify
    /// under it, for entries and trees that never existed, and nothing in them shows
    /// the rotation. So publish the new public key where people look it up, and give
    /// people who hold receipts a fresh one ([`Ledger::receipt`]) or a fresh
    /// checkpoint with a consistency proof from their receipt's
    /// ([`Ledger::checkpoint`], [`Ledger::consistency_proof`]), to check under the new
    /// key; keep the checkpoint given to
    /// [`LedgerBuilder::trusted_checkpoint`](crate::LedgerBuilder::trusted_checkpoint)
    /// up to date likewise.
    ///
    /// # Errors
    /// [`WriteError::Input`] when `new_key` is the current key or a key the log has
    /// revoked; storage failures.
    pub fn rotate_key(&self, new_key: SigningKey) -> Result<Recorded, WriteError> {
        let new_public = new_key.verifying_key().to_bytes();
        let accepting = new_key.clone();
        let recorded = self.append_then(
            Actor::System,
            |_, _, w| {
                if w.key.verifying_key().to_bytes() == new_public {
                    return Err(InputError::new("new signing key", "is the current key").into());
                }
                let revoked = self.inner.revocations.lock().map_err(|_| WriteError::Failed)?;
                if revoked.iter().any(|(key, ..)| *key == new_public) {
                    return Err(InputError::new("new signing key", "was revoked").into());
                }
                // The new key accepts the rotation at this position of this log, so that
                // the old key alone cannot write one (see `IntegrityProblem::RotationNotAccepted`).
                let accept = accepting.accept_rotation(w.next_seq, &w.last_hash);
                Ok(Prepared::Append(
                    Body::KeyRotated {
                        new_key: new_public,
                        accept,
                    },
                    None,
                ))
            },
            move |w| {
                w.key = new_key;
                // (`next_seq` is already past the rotation entry.)
                w.key_from = w.next_seq;
                if let Ok(mut signers) = self.inner.signers.lock() {
                    signers.push(new_public);
                }
            },
        )?;
        self.sync_key_change()?;
        Ok(recorded)
    }

    /// Makes a key rotation or revocation durable under every durability setting
    /// (`Immediate` and `GroupCommit` have already).
    fn sync_key_change(&self) -> Result<(), WriteError> {
        if self.inner.durability == super::Durability::Relaxed {
            // As `Ledger::sync`: what was written before the sync counts durable after it.
            let written = self.inner.group.written.load(std::sync::atomic::Ordering::SeqCst);
            self.sync_store().map_err(super::SyncError::not_durable)?;
            let mut s = self
                .inner
                .group
                .state
                .lock()
                .map_err(|_| super::SyncError::Refused.not_durable())?;
            if s.failed {
                // The change is stored: it may take effect after a reopen.
                return Err(super::SyncError::Refused.not_durable());
            }
            s.durable = s.durable.max(written);
            self.inner.head.durable_up_to(s.durable);
        }
        Ok(())
    }

    /// Declares `key` compromised from position `from` on: [`Ledger::verify`] reports
    /// the entries it signed at or after `from` in
    /// [`VerifyReport::untrusted`](crate::VerifyReport::untrusted). The entries stay in
    /// the log (nothing is rewritten); the revocation is itself a signed entry.
    ///
    /// The current key cannot be revoked: [`rotate_key`](Ledger::rotate_key) first, so
    /// that new entries are signed by a key that is still trusted. A revoked key can
    /// never be rotated to again, and receipts are refused for the entries it signed
    /// from `from` on. The revocation is synced before this returns, whatever the
    /// durability setting.
    ///
    /// Checkpoints signed from then on carry a `revoked` line naming `key` and `from`
    /// (the earliest, when it is revoked again), so that
    /// [`verify_receipt`](crate::verify_receipt) refuses a receipt for such an entry
    /// made with one of them, also one assembled by hand from public outputs. A receipt
    /// made with a checkpoint signed before the revocation (between the rotation and
    /// now, say) carries no such line: checking it against a later checkpoint
    /// ([`verify_receipt_against`](crate::verify_receipt_against)) refuses it. If the
    /// revocation's sync fails ([`WriteError::NotDurable`]), it is in effect at once,
    /// but no checkpoint could list it: none is signed until the ledger is reopened
    /// ([`Ledger::checkpoint`]).
    ///
    /// # Errors
    /// [`WriteError::Input`] when `key` is the current signing key or not a key of this
    /// ledger (one it never authorized), `from` is beyond the end of the log, or `key`
    /// would be the 1025th key revoked
    /// ([`MAX_REVOCATIONS`](crate::MAX_REVOCATIONS): every checkpoint lists them all);
    /// storage failures.
    pub fn revoke_key(&self, key: VerifyingKey, from: u64) -> Result<Recorded, WriteError> {
        let bytes = key.to_bytes();
        let recorded = self.append_then(
            Actor::System,
            |state, _, w| {
                if w.key.verifying_key().to_bytes() == bytes {
                    return Err(
                        InputError::new("revoked key", "is the current signing key; rotate first").into(),
                    );
                }
                if from > state.len {
                    return Err(
                        InputError::new("revocation position", "is beyond the end of the log").into(),
                    );
                }
                // A key that signed nothing here is a mistake (another ledger's key, a
                // copy-paste slip): revoking it would leave the key meant still trusted.
                let signers = self.inner.signers.lock().map_err(|_| WriteError::Failed)?;
                if !signers.contains(&bytes) {
                    return Err(InputError::new(
                        "revoked key",
                        "is not a key of this ledger (it never signed an entry here)",
                    )
                    .into());
                }
                drop(signers);
                // Checkpoints list every revoked key, and verifiers accept a bounded
                // number of lines.
                let revoked = self.inner.revocations.lock().map_err(|_| WriteError::Failed)?;
                let mut keys: Vec<&[u8; 32]> = revoked.iter().map(|(key, ..)| key).collect();
                keys.sort_unstable();
                keys.dedup();
                if !keys.contains(&&bytes) && keys.len() >= crate::checkpoint::MAX_REVOCATIONS {
                    return Err(InputError::new(
                        "revoked key",
                        "would exceed the 1024 keys a ledger may revoke",
                    )
                    .into());
                }
                Ok(Prepared::Append(Body::KeyRevoked { key: bytes, from }, None))
            },
            |w| {
                if let Ok(mut revoked) = self.inner.revocations.lock() {
                    revoked.push((bytes, from, w.next_seq.saturating_sub(1)));
                }
            },
        )?;
        self.sync_key_change()?;
        Ok(recorded)
    }

    /// The current grants that lapse within `within` from now, and those that have
    /// already lapsed but were not yet recorded as expired, earliest first, so the
    /// application can ask the person again in time. Regulators' guidance bounds how
    /// long some consents last: the French CNIL, for example, advises renewing cookie
    /// consent after at most 13 months.
    ///
    /// ```
    /// # use consent_ledger::*;
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    /// let ledger = Ledger::builder(dir.path())
    ///     .signing_key(SigningKey::generate())
    ///     .pseudonym_key(PseudonymKey::generate())
    ///     .clock(clock.clone())
    ///     .open()?;
    /// let thirteen_months = Duration::from_secs(396 * 24 * 3600);
    /// let alice = SubjectId::new("account-1")?;
    /// ledger.grant::<Analytics>(&alice, RecipientScope::first_party(), Some(clock.now().saturating_add(thirteen_months)))?;
    ///
    /// assert!(ledger.expiring(Duration::from_secs(30 * 24 * 3600))?.is_empty());
    /// clock.advance(Duration::from_secs(380 * 24 * 3600));
    /// let due = ledger.expiring(Duration::from_secs(30 * 24 * 3600))?;
    /// assert_eq!(due.len(), 1);
    /// assert_eq!(due[0].purpose, "analytics");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`WriteError::Failed`] when the state cannot be read.
    pub fn expiring(&self, within: Duration) -> Result<Vec<ExpiringConsent>, WriteError> {
        let limit = self.now().saturating_add(within);
        let state = self.inner.state.read().map_err(|_| WriteError::Failed)?;
        let mut out: Vec<ExpiringConsent> = state
            .grants_with_expiry()
            .into_iter()
            .filter(|(.., at)| *at <= limit)
            .map(|(subject, purpose, grant, expires_at)| ExpiringConsent {
                subject,
                purpose,
                grant,
                expires_at,
            })
            .collect();
        out.sort_by_key(|c| (c.expires_at, c.grant));
        Ok(out)
    }

    /// Appends an `Expired` entry (actor: system) for every grant whose expiry has
    /// passed, so that the log shows the lapse. Decisions deny lapsed consent whether or
    /// not this has run; running it twice appends nothing the second time.
    ///
    /// # Errors
    /// Storage failures; entries appended before a failure stay appended.
    pub fn record_expiries(&self) -> Result<Vec<Recorded>, WriteError> {
        let now = self.now();
        let due: Vec<(SubjectId, String, u64)> = {
            let state = self.inner.state.read().map_err(|_| WriteError::Failed)?;
            state
                .grants_with_expiry()
                .into_iter()
                .filter(|(.., at)| *at <= now)
                .map(|(s, p, g, _)| (s, p, g))
                .collect()
        };
        let mut out = Vec::with_capacity(due.len());
        for (subject, purpose, grant) in due {
            let r = self.append(Actor::System, |state, _| {
                // Still the same lapsed grant? (A new grant, a withdrawal or an erasure may
                // have arrived meanwhile.) One subject's record, not a scan of all of them.
                let still = state.erased_at(&subject).is_none()
                    && matches!(
                        state.consent_for(&subject, &purpose),
                        Some(Consent::Granted { seq, expires_at: Some(at), .. }) if seq == grant && at <= now
                    );
                if !still {
                    return Ok(Prepared::Already(grant));
                }
                Ok(Prepared::Append(
                    Body::Expired {
                        subject: subject.clone(),
                        purpose: purpose.clone(),
                    },
                    None,
                ))
            })?;
            if r.seq != grant {
                out.push(r);
            }
        }
        Ok(out)
    }
}

//! The log as a Merkle tree: checkpoints, proofs and receipts, built from the ledger.

use std::sync::atomic::Ordering;

use super::Ledger;
use crate::checkpoint::{ConsistencyProof, InclusionProof, SignedCheckpoint};
use crate::error::{IntegrityError, IntegrityProblem, ReadError};
use crate::merkle::{self, MerkleTree};
use crate::receipt::Receipt;

impl Ledger {
    /// Runs `f` on the Merkle tree of every entry written so far, building it on first
    /// use. The writer lock and then the storing stage are held, so no append slips in
    /// between and every entry signed is stored.
    fn with_tree<R>(&self, f: impl FnOnce(&MerkleTree, &mut super::Writer) -> R) -> Result<R, ReadError> {
        let mut w = self.inner.writer.lock().map_err(|_| super::poisoned())?;
        let _stored = self.inner.stage.lock().map_err(|_| super::poisoned())?;
        let mut tree = self.inner.tree.lock().map_err(|_| super::poisoned())?;
        if tree.is_none() {
            // Entries stored and applied. The store may hold one more: an entry stored
            // whose sync then failed (`Immediate`) is not applied unless it only takes
            // something away, and the ledger takes no more writes; it is not part of
            // what this process vouches for.
            let written = self.inner.group.written.load(std::sync::atomic::Ordering::SeqCst);
            let mut t = MerkleTree::new();
            let wanted = usize::try_from(written).unwrap_or(usize::MAX);
            // The chain is checked again as the entries are read: this may be long
            // after the open checked it, and the bytes come back from sled's files,
            // not from what this process wrote. A tree over bytes changed since then
            // would be signed into a checkpoint (review of stop 35: an edit to sled's
            // files while the ledger is open, read back after sled evicted the page).
            // It costs one more SHA-256 per entry, once per session.
            let mut prev: Option<crate::entry::Hash> = None;
            for item in self.inner.store.entries_from(0).take(wanted) {
                let (_, bytes) = item?;
                let position = t.len();
                let broken = |problem| IntegrityError { position, problem };
                let fields = crate::entry::chain_fields(&bytes)
                    .ok_or_else(|| broken(IntegrityProblem::Undecodable("not laid out as an entry")))?;
                if fields.seq != position {
                    return Err(broken(IntegrityProblem::Misplaced {
                        stored_at: position,
                        claims: fields.seq,
                    })
                    .into());
                }
                if prev.is_some_and(|p| p != fields.prev_hash) {
                    return Err(broken(IntegrityProblem::ChainBroken).into());
                }
                prev = Some(crate::entry::entry_hash(&bytes));
                t.push(merkle::leaf_hash(&bytes));
            }
            if t.len() != written {
                return Err(IntegrityError {
                    position: t.len().min(written),
                    problem: IntegrityProblem::Missing { next: t.len() },
                }
                .into());
            }
            // The last entry is the one this process chained the next append to (unless
            // an entry stored after it had its sync fail: then the writer is past it).
            if written == w.next_seq && prev.is_some_and(|p| p != w.last_hash) {
                return Err(IntegrityError {
                    position: written.saturating_sub(1),
                    problem: IntegrityProblem::ChainBroken,
                }
                .into());
            }
            *tree = Some(t);
        }
        match tree.as_ref() {
            Some(t) => Ok(f(t, &mut w)),
            None => Err(super::poisoned()),
        }
    }

    /// Number of entries known to be durable: what a checkpoint may cover; and whether
    /// a sync has failed (then no more will become durable in this session).
    fn durable_len(&self) -> Result<(u64, bool), ReadError> {
        let s = self.inner.group.state.lock().map_err(|_| super::poisoned())?;
        Ok((
            s.durable.min(self.inner.group.written.load(Ordering::SeqCst)),
            s.failed,
        ))
    }

    /// A signed checkpoint (C2SP signed note) of the durable part of the log: its size
    /// and Merkle root, and one `revoked` line per key revoked in that part
    /// ([`SignedCheckpoint::revocations`]), signed with the current signing key. Keep
    /// the latest one outside
    /// the database and pass it to
    /// [`LedgerBuilder::trusted_checkpoint`](crate::LedgerBuilder::trusted_checkpoint)
    /// when opening, to catch truncation and rollbacks. With
    /// [`Durability::Relaxed`](crate::Durability::Relaxed), call [`Ledger::sync`] first,
    /// or the checkpoint covers only what was synced.
    ///
    /// A key revocation told [`NotDurable`](crate::WriteError::NotDurable) is in effect
    /// (receipts for the key's entries are refused) but its entry is not durable, so no
    /// checkpoint could list it; since its sync failed, none ever will in this session.
    /// Then no checkpoint is signed at all (a storage error): one that vouched for the
    /// revoked key's entries, without the line a verifier needs to refuse their
    /// receipts, would contradict what this ledger already holds. Reopen the ledger and,
    /// if the revocation did not survive, revoke the key again. The same holds for a
    /// key rotation: a checkpoint is signed with the current key only once the rotation
    /// to it is durable (this call syncs first when it is not yet), so that the log it
    /// covers authorizes the key that signed it.
    ///
    /// # Errors
    /// Storage failures while building the tree on first use or while syncing a
    /// rotation, or the cases above. An integrity error when an entry read back to
    /// build the tree no longer chains to the one before it, or the last one is not
    /// the entry this process appended last: the store was changed since the open.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, ReadError> {
        self.with_tree(|t, w| self.checkpoint_locked(t, w))?
    }

    /// [`Ledger::checkpoint`], with the writer lock and the storing stage held: no
    /// entry is being signed or stored, so everything stored is counted in `written`
    /// and the durable length and a failed sync are read together with the key.
    fn checkpoint_locked(
        &self,
        t: &MerkleTree,
        w: &mut super::Writer,
    ) -> Result<SignedCheckpoint, ReadError> {
        let refused =
            |why: &'static str| ReadError::from(crate::error::StorageError::new("signing a checkpoint", why));
        let (mut size, mut sync_failed) = self.durable_len()?;
        if w.key_from > size && !sync_failed {
            // The rotation to the current key is stored but not durable yet (group
            // commit or `Relaxed`): synced now, here, so that no other rotation can land
            // meanwhile. (The sync waits for one already running.)
            let written = self.inner.group.written.load(Ordering::SeqCst);
            match self.sync_unless_failed() {
                // Unless a sync failed meanwhile (another thread's): read below.
                Ok(()) => {
                    let _ = self.synced_up_to(written);
                }
                Err(super::SyncError::Failed(e)) => {
                    // (Marked already by the failed sync; as everywhere the writer is.)
                    self.inner.mark_failed();
                    w.failed = true;
                    return Err(crate::error::StorageError::new(
                        "syncing a key rotation before a checkpoint",
                        e,
                    )
                    .into());
                }
                // Another sync failed since `sync_failed` was read: refused below.
                Err(super::SyncError::Refused) => {}
            }
            (size, sync_failed) = self.durable_len()?;
        }
        if w.key_from > size {
            return Err(refused(
                "the signing key's rotation could not be made durable; reopen the ledger",
            ));
        }
        let root = t.root_at(size).ok_or(IntegrityError {
            position: size,
            problem: IntegrityProblem::Missing { next: t.len() },
        })?;
        // Every revocation entry stored has been recorded here (under the writer lock).
        let revocations = self.inner.revocations.lock().map_err(|_| super::poisoned())?;
        if sync_failed && revocations.iter().any(|(.., at)| *at >= size) {
            return Err(refused(
                "a key revocation in effect could not be made durable; reopen the ledger",
            ));
        }
        let in_force = crate::checkpoint::in_force(&revocations, size);
        SignedCheckpoint::sign(&self.inner.ledger_id, size, root, &in_force, w.key.inner()).map_err(|_| {
            IntegrityError {
                position: size,
                problem: IntegrityProblem::InvalidField("checkpoint"),
            }
            .into()
        })
    }

    /// Proof that entry `seq` is in the tree of the first `tree_size` entries.
    ///
    /// # Errors
    /// [`ReadError::OutOfRange`] unless `seq < tree_size <= len()`; on the first call
    /// of a session, which builds the tree from the log, storage failures and an
    /// [`IntegrityError`] for an entry missing from the store.
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<InclusionProof, ReadError> {
        let hashes = self.with_tree(|t, _| t.inclusion_proof(seq, tree_size))?;
        let hashes = hashes.ok_or(ReadError::OutOfRange)?;
        Ok(InclusionProof {
            index: seq,
            tree_size,
            hashes,
        })
    }

    /// Proof that the tree of the first `old_size` entries is a prefix of the tree of
    /// the first `new_size`.
    ///
    /// # Errors
    /// [`ReadError::OutOfRange`] unless `old_size <= new_size <= len()`; on the first
    /// call of a session, as [`Ledger::inclusion_proof`].
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof, ReadError> {
        let hashes = self.with_tree(|t, _| t.consistency_proof(old_size, new_size))?;
        let hashes = hashes.ok_or(ReadError::OutOfRange)?;
        Ok(ConsistencyProof {
            old_size,
            new_size,
            hashes,
        })
    }

    /// The stored bytes of entry `seq` (what the Merkle leaf and the signature cover).
    ///
    /// # Errors
    /// [`ReadError::OutOfRange`] when there is no such entry; storage failures.
    pub fn entry_bytes(&self, seq: u64) -> Result<Vec<u8>, ReadError> {
        self.inner.store.entry(seq)?.ok_or(ReadError::OutOfRange)
    }

    /// A consent receipt for entry `seq` (normally a grant or withdrawal), to give to
    /// the person: the entry, its inclusion proof and a signed checkpoint, verifiable
    /// offline with [`verify_receipt`](crate::verify_receipt) and the ledger's public
    /// key. `how_to_withdraw` tells the person how to withdraw (a URL or a sentence),
    /// at most [`MAX_HOW_TO_WITHDRAW_LEN`](crate::MAX_HOW_TO_WITHDRAW_LEN) bytes, so that
    /// every receipt made here is one [`Receipt::from_json`] reads back (it reads at most
    /// [`MAX_RECEIPT_JSON_LEN`](crate::MAX_RECEIPT_JSON_LEN) bytes).
    ///
    /// # Errors
    /// [`ReadError::Input`] when `how_to_withdraw` is longer than
    /// [`MAX_HOW_TO_WITHDRAW_LEN`](crate::MAX_HOW_TO_WITHDRAW_LEN) bytes (checked first),
    /// or the entry is about no subject (the genesis entry, a key change), or is a
    /// change decisions ignore ([`Change::decides`](crate::Change::decides): a consent
    /// change for `"security"` that an older version wrote);
    /// [`ReadError::OutOfRange`] when the entry does not exist or is not yet durable
    /// (sync first); [`ReadError::Integrity`] with
    /// [`IntegrityProblem::RevokedKey`](crate::IntegrityProblem::RevokedKey) when it was
    /// signed by a key at or after the position it was revoked from (a receipt would
    /// vouch for an entry the stolen key may have made), or with
    /// [`IntegrityProblem::BadSignature`](crate::IntegrityProblem::BadSignature) when the
    /// entry's signature fails the strict check that [`verify_receipt`](crate::verify_receipt)
    /// makes (opening checks only the last entry's); storage failures.
    pub fn receipt(&self, seq: u64, how_to_withdraw: &str) -> Result<Receipt, ReadError> {
        if how_to_withdraw.len() > crate::receipt::MAX_HOW_TO_WITHDRAW_LEN {
            return Err(crate::error::InputError::new("how to withdraw", "is longer than 64 KiB").into());
        }
        let checkpoint = self.checkpoint()?;
        if seq >= checkpoint.size() {
            return Err(ReadError::OutOfRange);
        }
        let bytes = self.entry_bytes(seq)?;
        let proof = self.inclusion_proof(seq, checkpoint.size())?;
        let signer = self.signer_of(seq)?;
        // Opening checks only the last entry's signature: a receipt that the person's
        // strict check would refuse is not issued (an integrity error instead).
        let broken = |problem| crate::error::IntegrityError {
            position: seq,
            problem,
        };
        let stored = crate::entry::decode(&bytes).map_err(broken)?;
        if !signer.verify_entry(crate::entry::signed_part(&bytes, &stored), &stored.signature) {
            return Err(broken(crate::error::IntegrityProblem::BadSignature).into());
        }
        // A receipt tells a person that their change was recorded and counts: not of one
        // that decisions ignore (a consent change for "security", from a log written
        // before built-in ids were reserved for their basis; `Change::decides`).
        if super::history_entry(stored.entry).is_some_and(|h| !h.change.decides()) {
            return Err(crate::error::InputError::new(
                "receipt position",
                "is a consent change for a purpose that needs no consent, which decisions ignore: it has no receipt",
            )
            .into());
        }
        Receipt::build(&bytes, &proof, &checkpoint, &signer, how_to_withdraw).ok_or_else(|| {
            crate::error::InputError::new(
                "receipt position",
                "is an entry about no subject (the genesis entry or a key change): it has no receipt",
            )
            .into()
        })
    }

    /// The public key that signed entry `seq`: the genesis key or the last rotation
    /// before it. The key history of the whole log counts, for revocations after `seq`:
    /// the open's replay of the log has it, and each receipt continues it with the entries
    /// since (`Inner::receipt_keys`; at 1.25M entries a receipt read the whole log each
    /// time, 1.5 to 3.5 s).
    ///
    /// # Errors
    /// As [`Ledger::receipt`]: a key revoked for `seq` is an integrity error.
    pub(super) fn signer_of(&self, seq: u64) -> Result<crate::signing::VerifyingKey, ReadError> {
        // The entries the state applied (see `authorize_at`): a revocation stored by an
        // `Immediate` append whose sync failed is among them (it only takes trust away).
        let applied = self.applied_len()?;
        #[cfg(test)]
        self.inner.test_hooks.receipt_read_applied.run();
        // Taken: a read that fails, or panics, leaves none, and the next receipt starts
        // over (so a lock poisoned by a panic while reading holds nothing to distrust).
        let mut cached = self
            .inner
            .receipt_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One that a racing receipt carried past `applied` is still a history of the
        // log's start: the key of `seq` is the same in it, and any revocation it holds
        // besides only refuses more.
        let mut replay = cached.take().unwrap_or_else(|| super::replay::Replay::new(false));
        let from = replay.next_seq();
        for item in self
            .inner
            .store
            .entries_from(from)
            .take(usize::try_from(applied.saturating_sub(from)).unwrap_or(usize::MAX))
        {
            replay.step(item?)?;
        }
        if replay.next_seq() < applied {
            return Err(crate::error::IntegrityError {
                position: replay.next_seq(),
                problem: crate::error::IntegrityProblem::Missing {
                    next: replay.next_seq(),
                },
            }
            .into());
        }
        let replay = cached.insert(replay);
        if let Some(range) = replay.untrusted().iter().find(|r| r.from <= seq && seq <= r.to) {
            return Err(crate::error::IntegrityError {
                position: seq,
                problem: crate::error::IntegrityProblem::RevokedKey {
                    revoked_from: range.revoked_from,
                },
            }
            .into());
        }
        let key = replay
            .keys
            .iter()
            .rev()
            .find(|k| k.from <= seq)
            .map(|k| k.key)
            .ok_or(ReadError::OutOfRange)?;
        crate::signing::VerifyingKey::from_bytes(&key).map_err(|_| ReadError::OutOfRange)
    }
}

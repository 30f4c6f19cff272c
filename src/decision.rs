//! Decisions: a [`Use`] token when a use is allowed, a [`Denied`] reason when it is not.

use std::fmt;

use crate::identifier::{Identifier, IdentifierKind};
use crate::purpose::{LegalBasis, Purpose};
use crate::recipient::Recipient;
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// Proof that using one identifier for purpose `P`, by one recipient, is allowed now.
///
/// Only the ledger's decisions create a `Use` ([`Ledger::authorize`](crate::Ledger::authorize),
/// [`Ledger::authorize_batch`](crate::Ledger::authorize_batch) and
/// [`Channel::authorize`](crate::Channel::authorize)): its fields are private and it has
/// no public constructor, so holding one means the ledger said yes.
/// It borrows the identifier and the recipient it was decided for, is not `Clone`, and
/// only its methods read the identifier's value: [`Use::expose`] (for the first party's
/// own use) and the recipient-checked [`Use::deliver_to`] (a [`Channel`](crate::Channel)
/// delivers through them).
///
/// A `Use` is a decision at one moment: do not keep it. Ask again for the next use, so
/// that a withdrawal in between is respected.
///
/// ```compile_fail,E0451
/// // A Use cannot be forged: its fields are private.
/// use consent_ledger::{Security, Use};
/// let forged: Use<'static, Security> = Use { identifier: todo!(), recipient: todo!(), evidence: todo!() };
/// ```
pub struct Use<'a, P: Purpose> {
    identifier: &'a Identifier<P>,
    recipient: &'a Recipient,
    evidence: Evidence,
}

impl<'a, P: Purpose> Use<'a, P> {
    pub(crate) fn new(identifier: &'a Identifier<P>, recipient: &'a Recipient, evidence: Evidence) -> Self {
        Use {
            identifier,
            recipient,
            evidence,
        }
    }

    /// The identifier's normalized value (E.164 phone number, email address, device id),
    /// for the application's own use: only a use decided for [`Recipient::FirstParty`]
    /// exposes it. Borrowed from the `Use`, so the reference cannot outlive it: once the
    /// `Use` is delivered, the value is out of reach through it.
    ///
    /// A use decided for anyone else (a partner, a developer app) hands its value out
    /// only through [`Use::deliver_to`] or a [`Channel`](crate::Channel), where the
    /// recipient is checked (or typed) at the point of sending: a value exposed here
    /// could be sent to anyone, so that the "data sent to the wrong developer" mistake
    /// would not pass through a check. (These guard against mistakes, not against code
    /// set on copying a value out: a delivery's function, or `to_owned` on a
    /// first-party value, makes a copy bound to nothing.)
    ///
    /// ```
    /// # use consent_ledger::*;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = Ledger::builder(dir.path()).signing_key(SigningKey::generate())
    /// #     .pseudonym_key(PseudonymKey::generate()).open()?;
    /// let alice = SubjectId::new("account-1001")?;
    /// let email = Identifier::<PartnerSharing>::email("alice@example.com")?;
    /// ledger.collect(&alice, &email, RecipientScope::first_party())?;
    /// let acme = Recipient::partner("acme")?;
    /// ledger.grant::<PartnerSharing>(&alice, RecipientScope::any_of([Recipient::FirstParty, acme.clone()])?, None)?;
    ///
    /// // The application's own use: exposed.
    /// assert_eq!(ledger.authorize(&email, &Recipient::FirstParty)?.expose()?, "alice@example.com");
    ///
    /// // A use for acme: not exposed, only delivered to acme.
    /// let for_acme = ledger.authorize(&email, &acme)?;
    /// assert!(for_acme.expose().is_err());
    /// let sent = for_acme.deliver_to(&acme, |value| value.len())?;
    /// assert_eq!(sent, 17);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Misdelivery`](crate::Misdelivery) when the use was decided for another
    /// recipient than the first party (`attempted` is the first party).
    pub fn expose(&self) -> Result<&str, crate::delivery::Misdelivery> {
        if *self.recipient == Recipient::FirstParty {
            Ok(self.identifier.normalized())
        } else {
            Err(crate::delivery::Misdelivery {
                intended: self.recipient.clone(),
                attempted: Recipient::FirstParty,
            })
        }
    }

    /// The value, for a delivery whose recipient is already checked (or typed).
    pub(crate) fn value(&self) -> &str {
        self.identifier.normalized()
    }

    /// The kind of identifier.
    pub fn kind(&self) -> IdentifierKind {
        self.identifier.kind()
    }

    /// The recipient the use was decided for.
    pub fn recipient(&self) -> &'a Recipient {
        self.recipient
    }

    /// What the decision rested on.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// Hands the value to `f` for delivery to `recipient`, if `recipient` is the one this
    /// use was decided for; otherwise refuses without calling `f`.
    ///
    /// The `Use` is consumed: one decision, one delivery. Route every outgoing message
    /// through this call (or a [`Channel`](crate::Channel)) so that data decided for one
    /// recipient cannot be sent to another.
    ///
    /// This catches mistakes (a message addressed to the wrong app), not code that
    /// wants the value: `f` may keep a copy of it (`deliver_to(use_.recipient(),
    /// str::to_owned)`), and what it does with that copy is outside the crate's reach.
    /// The delivery function should be the one that sends to `recipient`.
    ///
    /// ```compile_fail,E0382
    /// # use consent_ledger::*;
    /// fn fan_out(u: Use<'_, Security>, a: &Recipient, b: &Recipient) {
    ///     let _ = u.deliver_to(a, |v| v.len());
    ///     let _ = u.deliver_to(b, |v| v.len()); // the use was consumed by the first delivery
    /// }
    /// ```
    ///
    /// # Errors
    /// [`Misdelivery`](crate::Misdelivery) naming both recipients.
    pub fn deliver_to<R>(
        self,
        recipient: &Recipient,
        f: impl FnOnce(&str) -> R,
    ) -> Result<R, crate::delivery::Misdelivery> {
        if recipient != self.recipient {
            return Err(crate::delivery::Misdelivery {
                intended: self.recipient.clone(),
                attempted: recipient.clone(),
            });
        }
        Ok(f(self.identifier.normalized()))
    }
}

impl<P: Purpose> fmt::Debug for Use<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Use")
            .field("identifier", self.identifier)
            .field("recipient", self.recipient)
            .field("evidence", &self.evidence)
            .finish()
    }
}

/// What an allowed decision rested on: enough to answer later "who, what purpose, when,
/// under which consent entry". It does not name the recipient: two uses of one grant
/// for two partners have equal evidence. Keep the recipient beside it:
/// [`Use::recipient`], [`Channel::recipient`](crate::Channel::recipient), the recipient an
/// [`AudienceMatcher`](crate::AudienceMatcher) was made for; decision records
/// ([`Ledger::decision_records`](crate::Ledger::decision_records)) keep both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub(crate) subject: SubjectId,
    pub(crate) purpose: &'static str,
    pub(crate) basis: LegalBasis,
    pub(crate) position: u64,
    pub(crate) allowed_by: u64,
    pub(crate) collected_at: u64,
    pub(crate) decided_at: Timestamp,
}

impl Evidence {
    /// The subject the identifier belongs to.
    pub fn subject(&self) -> &SubjectId {
        &self.subject
    }

    /// The purpose id.
    pub fn purpose(&self) -> &'static str {
        self.purpose
    }

    /// The legal basis the use relies on.
    pub fn legal_basis(&self) -> LegalBasis {
        self.basis
    }

    /// The ledger's length when the decision was made: every entry before this
    /// position was taken into account.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The entry that allowed the use: the consent grant for consent-based purposes,
    /// the collection entry otherwise.
    pub fn allowed_by(&self) -> u64 {
        self.allowed_by
    }

    /// The entry that recorded the identifier as collected for this purpose.
    pub fn collected_at(&self) -> u64 {
        self.collected_at
    }

    /// When the decision was made. Read from the clock when the outcome depended on the
    /// time (an expiring grant); otherwise, with the default clock, taken from a reading
    /// refreshed every millisecond, so it may be a few milliseconds early.
    /// [`position`](Evidence::position) orders decisions and changes exactly.
    pub fn decided_at(&self) -> Timestamp {
        self.decided_at
    }
}

/// Why a use is not allowed. Decisions fail closed: anything the ledger cannot
/// establish is a denial.
///
/// The reason is for the operator, not for whoever asked for the data: told apart,
/// [`UnknownIdentifier`](Denied::UnknownIdentifier) and
/// [`NotCollectedForPurpose`](Denied::NotCollectedForPurpose) say whether a number
/// belongs to an account and was given for another purpose (a 2FA number), and the
/// consent reasons what its holder chose. Do not pass them on to a partner or an
/// advertiser; audience matching shows an uploader only
/// [`AudienceCounts::for_uploader`](crate::AudienceCounts::for_uploader) for this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// No subject holds this identifier in the ledger: it was never collected, or only
    /// by a subject since erased (whose collections the ledger can no longer link).
    #[error("no subject holds the identifier")]
    UnknownIdentifier,
    /// The identifier's holder has it collected, but not for this purpose (which an
    /// erased earlier holder may have had).
    #[error("the identifier is not collected for {purpose:?}")]
    NotCollectedForPurpose {
        /// The purpose asked for.
        purpose: &'static str,
    },
    /// The purpose needs consent and the subject never gave it.
    #[error("no consent was ever given for {purpose:?}")]
    NoConsent {
        /// The purpose asked for.
        purpose: &'static str,
    },
    /// Consent was withdrawn.
    #[error("consent for {purpose:?} was withdrawn at entry {at}")]
    Withdrawn {
        /// The purpose asked for.
        purpose: &'static str,
        /// The withdrawal entry.
        at: u64,
    },
    /// Consent expired.
    #[error("consent for {purpose:?} given at entry {grant} expired at {at}")]
    Expired {
        /// The purpose asked for.
        purpose: &'static str,
        /// The grant that expired.
        grant: u64,
        /// When it expired.
        at: Timestamp,
    },
    /// The consent (or collection) does not cover this recipient.
    #[error("entry {entry} does not cover {recipient}")]
    RecipientNotCovered {
        /// The recipient asked for.
        recipient: Recipient,
        /// The grant or collection entry whose scope excludes it.
        entry: u64,
    },
    /// The subject was erased. Decisions about an identifier never give this today:
    /// erasure drops the subject's identifiers from the state, so nothing links them to
    /// anyone and they are [`Denied::UnknownIdentifier`] (no trace of the erased person
    /// in the answer). Kept for decisions that name a subject directly.
    #[error("the subject was erased at entry {at}")]
    SubjectErased {
        /// The erasure entry.
        at: u64,
    },
    /// The ledger's state could not be read (a thread panicked while changing it), or,
    /// with [`Recording::Every`](crate::Recording::Every), the record of an allowed use
    /// could not be written (a storage failure): denied either way, to fail closed.
    #[error("the ledger is unavailable; denied to fail closed")]
    Unavailable,
    /// The ledger has failed ([`Ledger::is_failed`](crate::Ledger::is_failed): a sync of
    /// its store failed, an entry could not be stored, or a thread panicked while
    /// recording a change) and takes no more changes
    /// until it is reopened, so a withdrawal or an erasure asked for now cannot be
    /// recorded: with [`AfterFailure::DenyDecisions`](crate::AfterFailure::DenyDecisions),
    /// the default, every use is denied until then (see
    /// [`LedgerBuilder::after_failure`](crate::LedgerBuilder::after_failure)). Says
    /// nothing about the identifier: given for every one, known or not. Reopen the
    /// ledger.
    #[error("the ledger failed to write to its storage; every use is denied until it is reopened")]
    LedgerFailed,
}

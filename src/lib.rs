#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audience;
#[doc(hidden)]
pub mod bench_support;
mod checkpoint;
mod decision;
pub mod delivery;
mod entry;
mod error;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod identifier;
mod inspect;
mod lanes;
mod ledger;
mod merkle;
mod normalize;
mod note;
mod purpose;
mod receipt;
mod recipient;
mod records;
mod signing;
mod state;
mod store;
mod subject;
mod threads;
mod time;

pub use audience::{AudienceCounts, AudienceMatch, AudienceMatcher, DeniedCounts, UploaderCounts};
pub use checkpoint::{
    verify_consistency, verify_inclusion, AuditError, ConsistencyProof, InclusionProof, Revocation,
    SignedCheckpoint, MAX_REVOCATIONS,
};
pub use decision::{Denied, Evidence, Use};
pub use delivery::{Channel, Misdelivery, Parcel};
pub use entry::Actor;
pub use error::{
    IdentifierError, InputError, IntegrityError, IntegrityProblem, OpenError, ReadError, StorageError,
    WriteError,
};
pub use identifier::{Identifier, IdentifierKind, PseudonymKey};
pub use inspect::{Inspector, ValidPrefix};
pub use ledger::{
    AfterFailure, At, Change, Durability, ExpiringConsent, HistoryEntry, Hypothesis, ImpactQuery,
    ImpactReport, Ledger, LedgerBuilder, NoPseudonymKey, NoSigningKey, Recorded, Snapshots, Unlawful,
    UnlawfulUse, UntrustedRange, UntrustedUse, VerifyReport,
};
pub use merkle::ProofError;
pub use note::NoteError;
pub use purpose::{
    id_allows_basis, is_valid_purpose_id, reserved_basis, Advertising, Analytics, LegalBasis, PartnerSharing,
    Personalization, Purpose, PurposeInfo, Security, MAX_PURPOSE_IDS, MAX_PURPOSE_ID_LEN,
};
pub use receipt::{
    verify_receipt, verify_receipt_against, Receipt, VerifiedReceipt, MAX_HOW_TO_WITHDRAW_LEN,
    MAX_RECEIPT_JSON_LEN, RECEIPT_VERSION,
};
pub use recipient::{Name, Recipient, RecipientScope, MAX_RECIPIENT_NAME_LEN};
pub use records::{DecisionRecord, Recording};
pub use signing::{InvalidKey, SigningKey, VerifyingKey};
pub use subject::{SubjectId, MAX_SUBJECT_ID_LEN};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};

//! Audience matching: which of an uploaded list of identifiers (an advertiser's
//! customer list) may be matched to subjects for a purpose and a recipient.
//!
//! This is the operation behind the incident the crate exists for: a platform matched
//! uploaded phone numbers against every account, including numbers given only for
//! two-factor authentication. Here every uploaded identifier goes through the same
//! decision as [`Ledger::authorize`]: it matches only if it was collected for the
//! purpose asked for and, for consent-based purposes, the subject's consent covers the
//! recipient right now.
//!
//! ```
//! use consent_ledger::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let ledger = Ledger::builder(dir.path())
//!     .signing_key(SigningKey::generate())
//!     .pseudonym_key(PseudonymKey::generate())
//!     .open()?;
//! let alice = SubjectId::new("user-1")?;
//! let bob = SubjectId::new("user-2")?;
//! // Alice gave her email for advertising and consented; Bob gave his phone for 2FA only.
//! let email = Identifier::<Advertising>::email("alice@example.com")?;
//! ledger.collect(&alice, &email, RecipientScope::all_partners())?;
//! ledger.grant::<Advertising>(&alice, RecipientScope::all_partners(), None)?;
//! ledger.collect(&bob, &Identifier::<Security>::phone("+15550100002")?, RecipientScope::first_party())?;
//!
//! let advertiser = Recipient::partner("acme-ads")?;
//! let upload = [" alice@EXAMPLE.com", "+1 555 010 0002", "+15550109999", "not a number"];
//! let (matches, counts) = ledger.audience::<Advertising>(&advertiser).collect(upload);
//! assert_eq!(matches.len(), 1);
//! assert_eq!(matches[0].subject(), &alice);
//! assert_eq!(counts.denied.not_collected_for_purpose, 1); // Bob's 2FA number
//! assert_eq!((counts.unknown, counts.malformed), (1, 1));
//! println!("{counts}"); // the operator's log: counts only, never a value
//! // The uploader sees only the size of the audience, and not below a minimum: the
//! // other counts would tell it which of its numbers are 2FA numbers.
//! assert_eq!(counts.for_uploader(1).to_string(), "uploaded 4, malformed 1, matched 1");
//! # Ok(())
//! # }
//! ```
//!
//! # Streaming
//!
//! The upload is an iterator and is read in chunks ([`DEFAULT_CHUNK`] identifiers):
//! each chunk is normalized and pseudonymized without any lock held (on x86-64,
//! sixteen pseudonyms at a time, in lanes: without SHA instructions in SIMD registers,
//! with AVX2 4.3 to 4.6 times as fast as bare HMAC-SHA256 one by one in this project's
//! measurements (BENCHMARKS.md, "Stop 21"; SSE2 alone, about 2 times); with them, four
//! blocks side by side in those instructions, about 1.6 to 1.9 times),
//! then decided under
//! one read lock of the ledger's state, then its matches are recorded and handed to the
//! caller's callback, in upload order, with the lock released. With two threads, a
//! worker takes whole chunks and processes them as the calling thread does the others
//! (the calling thread hands chunks out, processes a later one itself when the worker's
//! next one is not done, and reports matches in upload order), holding at most four
//! chunks. Memory is bounded by the chunk size and the number of subjects (a bit per
//! subject to report each subject once), never by the upload's length: a row longer
//! than any identifier (over 512 bytes) is counted malformed and dropped as soon as it
//! is read, so a chunk holds at most that much of each row's text. A change
//! recorded (for example a withdrawal acknowledged) before a chunk's decisions start is
//! seen by every decision of that chunk, and writers wait for at most the chunks being
//! decided (one per thread). With two threads, a later chunk may be decided before an
//! earlier one, so a change made during the run may be seen by a later chunk and not
//! by an earlier one: each decision is the answer at its own time, as its stamp says.
//! A decided chunk may also wait to be handed out while more of the upload is read (for
//! as long as the upload takes to yield its rows), and each match waits for the
//! callbacks of the matches before it: if the ledger recorded any change since a match
//! was decided, or the consent it rests on lapsed since, it is decided again just before
//! it is handed out. So no match is handed out after a withdrawal or an erasure was
//! acknowledged, or after its consent expired (what the callback then does with it is
//! as with any `Use`).
//!
//! # After a failure
//!
//! Once the ledger has failed ([`Ledger::is_failed`]), it takes no more changes, so a
//! withdrawal asked for during the run could not be recorded. With
//! [`AfterFailure::DenyDecisions`](crate::AfterFailure::DenyDecisions), the default, the
//! run is not refused but nothing more is matched: every well-formed row of a chunk
//! decided from then on, and every match decided before but not yet handed out, is
//! counted in [`DeniedCounts::ledger_failed`] (malformed rows are still counted
//! malformed), so that
//! `uploaded == malformed + unknown + matched + duplicates + denied.total()` holds as
//! always. A row is not looked up once the ledger has failed: whether it is known is
//! not counted (as [`Ledger::authorize`] answers [`Denied::LedgerFailed`] for any
//! identifier). Matches handed out before the failure stand, as a `Use` returned before
//! it does.

use std::fmt;
use std::marker::PhantomData;
use std::sync::mpsc;

use crate::decision::{Denied, Evidence};
use crate::identifier::{IdentifierKind, Pseudonym};
use crate::ledger::Ledger;
use crate::purpose::Purpose;
use crate::recipient::Recipient;
use crate::state::WARM;
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// Identifiers decided under one read lock, by default.
pub const DEFAULT_CHUNK: usize = 4096;

/// The largest chunk [`AudienceMatcher::chunk_size`] takes: larger sizes are capped, so
/// an upload is never read whole into memory.
pub const MAX_CHUNK: usize = 1 << 20;

impl IdentifierKind {
    /// Guesses the kind of an uploaded raw identifier: an email address if it contains
    /// `@`, otherwise a phone number.
    pub fn guess(raw: &str) -> IdentifierKind {
        if raw.contains('@') {
            IdentifierKind::Email
        } else {
            IdentifierKind::Phone
        }
    }
}

/// Denials of an audience match, by reason (see [`Denied`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive] // new denial reasons add fields
pub struct DeniedCounts {
    /// Known identifiers not collected for the purpose (such as 2FA-only numbers).
    pub not_collected_for_purpose: u64,
    /// No consent was ever given.
    pub no_consent: u64,
    /// Consent was withdrawn.
    pub withdrawn: u64,
    /// Consent expired.
    pub expired: u64,
    /// The consent or collection does not cover the recipient.
    pub recipient_not_covered: u64,
    /// The subject was erased: always 0 today, as an erased subject's identifiers are
    /// counted as unknown (see [`Denied::SubjectErased`]).
    pub subject_erased: u64,
    /// The ledger's state could not be read (fail closed).
    pub unavailable: u64,
    /// The ledger had failed ([`Denied::LedgerFailed`]; with
    /// [`AfterFailure::DenyDecisions`](crate::AfterFailure::DenyDecisions), the
    /// default): every well-formed row of a chunk decided after the failure, known to the
    /// ledger or not (it is not looked up), and every match not yet handed out when the
    /// failure was seen. The run goes on and counts every row, so the counts still add
    /// up, and nothing more is matched; reopen the ledger and match again.
    pub ledger_failed: u64,
}

impl DeniedCounts {
    /// All denials (saturating at `u64::MAX`: the fields are public, and a caller
    /// adding up several uploads may set them).
    pub fn total(&self) -> u64 {
        [
            self.no_consent,
            self.withdrawn,
            self.expired,
            self.recipient_not_covered,
            self.subject_erased,
            self.unavailable,
            self.ledger_failed,
        ]
        .into_iter()
        .fold(self.not_collected_for_purpose, u64::saturating_add)
    }

    /// Counts one denial (saturating, as every count of a match does).
    fn count(&mut self, reason: &Denied) {
        let n = match reason {
            Denied::NotCollectedForPurpose { .. } => &mut self.not_collected_for_purpose,
            Denied::NoConsent { .. } => &mut self.no_consent,
            Denied::Withdrawn { .. } => &mut self.withdrawn,
            Denied::Expired { .. } => &mut self.expired,
            Denied::RecipientNotCovered { .. } => &mut self.recipient_not_covered,
            Denied::SubjectErased { .. } => &mut self.subject_erased,
            Denied::LedgerFailed => &mut self.ledger_failed,
            // UnknownIdentifier is counted apart; anything else fails closed.
            Denied::Unavailable | Denied::UnknownIdentifier => &mut self.unavailable,
        };
        *n = n.saturating_add(1);
    }

    /// Adds `other`'s denials (saturating).
    fn add(&mut self, other: &DeniedCounts) {
        let DeniedCounts {
            not_collected_for_purpose,
            no_consent,
            withdrawn,
            expired,
            recipient_not_covered,
            subject_erased,
            unavailable,
            ledger_failed,
        } = *other;
        self.not_collected_for_purpose = self
            .not_collected_for_purpose
            .saturating_add(not_collected_for_purpose);
        self.no_consent = self.no_consent.saturating_add(no_consent);
        self.withdrawn = self.withdrawn.saturating_add(withdrawn);
        self.expired = self.expired.saturating_add(expired);
        self.recipient_not_covered = self.recipient_not_covered.saturating_add(recipient_not_covered);
        self.subject_erased = self.subject_erased.saturating_add(subject_erased);
        self.unavailable = self.unavailable.saturating_add(unavailable);
        self.ledger_failed = self.ledger_failed.saturating_add(ledger_failed);
    }
}

/// What happened to an uploaded list, for the operator. Holds counts only (no
/// identifier, pseudonym or subject), so it can be logged, but it is **not for the
/// uploader**: for an upload of one number, `unknown` against `denied` tells whether the
/// number belongs to an account, and the reason whether it was given for 2FA only,
/// whether its holder withdrew or never consented. None of that is the uploader's to
/// know. Show the uploader [`AudienceCounts::for_uploader`].
///
/// Every uploaded identifier is counted exactly once:
/// `uploaded == malformed + unknown + matched + duplicates + denied.total()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive] // more outcomes may be counted
pub struct AudienceCounts {
    /// Identifiers read from the upload.
    pub uploaded: u64,
    /// Identifiers that are not a valid phone number or email address.
    pub malformed: u64,
    /// Valid identifiers the ledger does not know. An email address is matched as
    /// normalized, its local part kept as given: a spelling that differs from the one
    /// collected in the local part's case or a `+tag` ("Bob@…", "bob+ads@…" for
    /// "bob@…") is another identifier, counted here.
    pub unknown: u64,
    /// Identifiers that matched a subject (reported through the callback).
    pub matched: u64,
    /// Identifiers that would match a subject already matched earlier in this upload
    /// (each subject is reported once).
    pub duplicates: u64,
    /// Known identifiers whose use is not allowed, by reason (once the ledger has
    /// failed, every well-formed identifier: [`DeniedCounts::ledger_failed`]).
    pub denied: DeniedCounts,
}

impl fmt::Display for AudienceCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.denied;
        write!(
            f,
            "uploaded {}, malformed {}, unknown {}, matched {}, duplicates {}, denied {} \
             (not collected for the purpose {}, no consent {}, withdrawn {}, expired {}, \
             recipient not covered {}, erased {}, unavailable {}, ledger failed {})",
            self.uploaded,
            self.malformed,
            self.unknown,
            self.matched,
            self.duplicates,
            d.total(),
            d.not_collected_for_purpose,
            d.no_consent,
            d.withdrawn,
            d.expired,
            d.recipient_not_covered,
            d.subject_erased,
            d.unavailable,
            d.ledger_failed
        )
    }
}

impl AudienceCounts {
    /// Adds a decided chunk of `rows` rows: its own counts (malformed, unknown and
    /// denied; the chunk counts nothing else) to this run's. Saturating, as the row
    /// numbers and [`DeniedCounts::total`] are, so that no count overflows (and panics
    /// in a debug build), whatever the upload's length.
    fn add_chunk(&mut self, rows: u64, chunk: &AudienceCounts) {
        self.uploaded = self.uploaded.saturating_add(rows);
        self.malformed = self.malformed.saturating_add(chunk.malformed);
        self.unknown = self.unknown.saturating_add(chunk.unknown);
        self.denied.add(&chunk.denied);
    }

    /// What may be shown to the uploader: how many rows were uploaded and were not an
    /// identifier at all (which depends on the upload alone), and how many subjects
    /// matched, withheld when fewer than `min_audience`. Unknown identifiers and denials
    /// are not told apart from each other, or from anything: an uploader learns only
    /// the size of the audience it may reach.
    ///
    /// The minimum keeps one upload of a few numbers from telling which of them match.
    /// It cannot stop differencing: two uploads of 1,000 rows that differ by one number,
    /// both above the minimum, tell whether that number matches. Limit how often one
    /// uploader may match, or match only lists that do not overlap much.
    ///
    /// ```
    /// # use consent_ledger::AudienceCounts;
    /// let counts = AudienceCounts::default(); // as returned by a match
    /// let shown = counts.for_uploader(100);
    /// assert_eq!(shown.matched, None); // fewer than 100: withheld
    /// assert_eq!(shown.to_string(), "uploaded 0, malformed 0, matched fewer than 100");
    /// ```
    pub fn for_uploader(&self, min_audience: u64) -> UploaderCounts {
        UploaderCounts {
            uploaded: self.uploaded,
            malformed: self.malformed,
            matched: (self.matched >= min_audience).then_some(self.matched),
            min_audience,
        }
    }
}

/// The counts of a match that may be shown to the uploader (see
/// [`AudienceCounts::for_uploader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploaderCounts {
    /// Identifiers read from the upload.
    pub uploaded: u64,
    /// Rows that are not a valid phone number or email address.
    pub malformed: u64,
    /// Subjects matched, or `None` when fewer than `min_audience`.
    pub matched: Option<u64>,
    /// The smallest number of matched subjects that is shown.
    pub min_audience: u64,
}

impl fmt::Display for UploaderCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uploaded {}, malformed {}, ", self.uploaded, self.malformed)?;
        match self.matched {
            Some(n) => write!(f, "matched {n}"),
            None => write!(f, "matched fewer than {}", self.min_audience),
        }
    }
}

/// One matched subject: which upload row matched, and the evidence that allowed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceMatch {
    row: u64,
    kind: IdentifierKind,
    evidence: Evidence,
}

impl AudienceMatch {
    /// The position of the matching identifier in the upload, from 0.
    pub fn row(&self) -> u64 {
        self.row
    }

    /// The kind of the matching identifier.
    pub fn kind(&self) -> IdentifierKind {
        self.kind
    }

    /// The matched subject.
    pub fn subject(&self) -> &SubjectId {
        self.evidence.subject()
    }

    /// What allowed the match: the same evidence [`Ledger::authorize`] gives.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }
}

/// Matches uploaded identifiers for purpose `P` and one recipient. Made by
/// [`Ledger::audience`].
///
/// # Defaults
/// - chunk size: [`DEFAULT_CHUNK`];
/// - threads: 2 when the machine has at least 2 cores, else 1 (chunks are split
///   between them; matches are reported on the calling thread).
pub struct AudienceMatcher<'l, P: Purpose> {
    ledger: &'l Ledger,
    recipient: &'l Recipient,
    chunk: usize,
    threads: usize,
    _purpose: PhantomData<fn(P) -> P>,
}

impl<P: Purpose> fmt::Debug for AudienceMatcher<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudienceMatcher")
            .field("purpose", &P::ID)
            .field("recipient", self.recipient)
            .field("chunk", &self.chunk)
            .field("threads", &self.threads)
            .finish()
    }
}

impl Ledger {
    /// Starts matching uploaded identifiers for purpose `P` and `recipient`; see the
    /// [`audience` module](crate::audience).
    pub fn audience<'l, P: Purpose>(&'l self, recipient: &'l Recipient) -> AudienceMatcher<'l, P> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        AudienceMatcher {
            ledger: self,
            recipient,
            chunk: DEFAULT_CHUNK,
            threads,
            _purpose: PhantomData,
        }
    }
}

fn guessed<S: AsRef<str>>(s: &S) -> (IdentifierKind, &str) {
    let raw = s.as_ref();
    (IdentifierKind::guess(raw), raw)
}

fn typed<S: AsRef<str>>((kind, s): &(IdentifierKind, S)) -> (IdentifierKind, &str) {
    (*kind, s.as_ref())
}

/// One row after normalizing and hashing: its kind and lookup pseudonym, or malformed.
type Hashed = Option<(IdentifierKind, Pseudonym)>;

impl<'l, P: Purpose> AudienceMatcher<'l, P> {
    /// Identifiers decided under one read lock: at least 1, at most [`MAX_CHUNK`].
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk = n.clamp(1, MAX_CHUNK);
        self
    }

    /// Threads that normalize, hash and decide: 1 or 2 (more are capped at 2).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.clamp(1, 2);
        self
    }

    /// Matches raw identifiers, guessing each one's kind with [`IdentifierKind::guess`],
    /// and calls `on_match` for each matched subject (once per subject) as the upload is
    /// read. Returns the counts.
    pub fn run<S>(
        &self,
        upload: impl IntoIterator<Item = S>,
        on_match: impl FnMut(AudienceMatch),
    ) -> AudienceCounts
    where
        S: AsRef<str> + Send,
    {
        self.run_inner(upload.into_iter(), guessed::<S>, |s| s.as_ref().len(), on_match)
    }

    /// As [`AudienceMatcher::run`], with each identifier's kind given.
    pub fn run_typed<S>(
        &self,
        upload: impl IntoIterator<Item = (IdentifierKind, S)>,
        on_match: impl FnMut(AudienceMatch),
    ) -> AudienceCounts
    where
        S: AsRef<str> + Send,
    {
        self.run_inner(
            upload.into_iter(),
            typed::<S>,
            |(_, s)| s.as_ref().len(),
            on_match,
        )
    }

    /// As [`AudienceMatcher::run`], collecting the matches (at most one per subject).
    pub fn collect<S>(&self, upload: impl IntoIterator<Item = S>) -> (Vec<AudienceMatch>, AudienceCounts)
    where
        S: AsRef<str> + Send,
    {
        let mut out = Vec::new();
        let counts = self.run(upload, |m| out.push(m));
        (out, counts)
    }

    fn run_inner<T: Send>(
        &self,
        mut upload: impl Iterator<Item = T>,
        split: impl Fn(&T) -> (IdentifierKind, &str) + Sync,
        raw_len: impl Fn(&T) -> usize,
        mut on_match: impl FnMut(AudienceMatch),
    ) -> AudienceCounts {
        let key = self.ledger.pseudonym_key();
        // Normalizes, hashes and decides one chunk of rows, the first at `base` (`None`:
        // a row too long to be an identifier, dropped as it was read).
        let process = |rows: &[Option<T>], base: u64| {
            // One message buffer for the chunk, wiped after each row.
            let hashed: Vec<Hashed> = key.lookup_hasher().of_raws(
                rows.iter()
                    .map(|row| row.as_ref().map_or((IdentifierKind::Email, ""), &split)),
            );
            self.decide(&hashed, base)
        };
        let mut run = Run {
            counts: AudienceCounts::default(),
            seen: Vec::new(),
        };
        let mut next_row = 0u64;
        let mut read_chunk = |upload: &mut dyn Iterator<Item = T>| -> Option<(Vec<Option<T>>, u64)> {
            // Grown as rows come: a short upload does not reserve a large chunk's room.
            let mut chunk = Vec::with_capacity(self.chunk.min(DEFAULT_CHUNK));
            // A row longer than any identifier is malformed whatever it holds: dropped
            // now, so that a chunk holds at most that much of each row (review h35-a:
            // a chunk of rows of a megabyte each was held whole).
            chunk.extend(
                upload
                    .take(self.chunk)
                    .map(|row| (raw_len(&row) <= crate::normalize::MAX_INPUT_LEN).then_some(row)),
            );
            if chunk.is_empty() {
                return None;
            }
            let base = next_row;
            next_row = next_row.saturating_add(chunk.len() as u64);
            Some((chunk, base))
        };
        if self.threads < 2 {
            while let Some((rows, base)) = read_chunk(&mut upload) {
                let decided = process(&rows, base);
                drop(rows);
                self.merge(&mut run, decided, &mut on_match);
            }
            return run.counts;
        }
        // Two threads: a worker for the whole run takes whole chunks and normalizes,
        // hashes and decides them, as this thread does with the chunks it keeps; this
        // thread hands chunks out and reports their matches in upload order. When the
        // worker's next chunk is not done yet, this thread processes a later chunk
        // itself instead of waiting, so both threads stay busy. At most `MAX_PENDING`
        // chunks are held, whatever the upload's length.
        const MAX_PENDING: usize = 4;
        enum Pending {
            /// Handed to the worker.
            Worker,
            /// Decided here.
            Mine(Decided),
        }
        std::thread::scope(|scope| {
            let (to_worker, jobs) = mpsc::sync_channel::<(Vec<Option<T>>, u64)>(1);
            let (to_main, done) = mpsc::sync_channel::<Decided>(2);
            let process = &process;
            // When no thread can be started, the work (and `jobs`) is dropped: the first
            // chunk handed to the worker comes back, and this thread processes every
            // chunk, as with one thread.
            let worker = crate::threads::spawn_scoped(scope, "consent-ledger-audience", move || {
                for (rows, base) in jobs {
                    let decided = process(&rows, base);
                    drop(rows);
                    if to_main.send(decided).is_err() {
                        return;
                    }
                }
            });
            drop(worker.ok());
            let mut pending: std::collections::VecDeque<Pending> = std::collections::VecDeque::new();
            let mut with_worker = 0usize;
            let mut worker_alive = true;
            let mut upload_done = false;
            let mut next = |upload: &mut dyn Iterator<Item = T>, done: &mut bool| {
                if *done {
                    return None;
                }
                let chunk = read_chunk(upload);
                *done = chunk.is_none();
                chunk
            };
            loop {
                // Keep the worker fed: one chunk in its hands, one waiting.
                while worker_alive && with_worker < 2 && pending.len() < MAX_PENDING {
                    let Some((chunk, base)) = next(&mut upload, &mut upload_done) else {
                        break;
                    };
                    match to_worker.send((chunk, base)) {
                        Ok(()) => {
                            pending.push_back(Pending::Worker);
                            with_worker += 1;
                        }
                        Err(mpsc::SendError((back, base))) => {
                            worker_alive = false;
                            pending.push_back(Pending::Mine(process(&back, base)));
                        }
                    }
                }
                let decided = match pending.front() {
                    None => match next(&mut upload, &mut upload_done) {
                        // The worker is gone: process here.
                        Some((chunk, base)) => process(&chunk, base),
                        None => return run.counts,
                    },
                    Some(Pending::Worker) => {
                        // If the worker died (an `AsRef` implementation panicked), the run
                        // stops here, as it does with one thread: no more rows are read
                        // and no later match is handed out; the scope then re-raises the
                        // panic.
                        let decided = match done.try_recv() {
                            Ok(decided) => decided,
                            Err(mpsc::TryRecvError::Disconnected) => return run.counts,
                            Err(mpsc::TryRecvError::Empty) => {
                                // Not ready: process a later chunk here rather than wait,
                                // while there is room for it.
                                if pending.len() < MAX_PENDING {
                                    if let Some((chunk, base)) = next(&mut upload, &mut upload_done) {
                                        pending.push_back(Pending::Mine(process(&chunk, base)));
                                        continue;
                                    }
                                }
                                match done.recv() {
                                    Ok(decided) => decided,
                                    Err(_) => return run.counts,
                                }
                            }
                        };
                        pending.pop_front();
                        with_worker = with_worker.saturating_sub(1);
                        decided
                    }
                    Some(Pending::Mine(_)) => match pending.pop_front() {
                        Some(Pending::Mine(decided)) => decided,
                        _ => continue,
                    },
                };
                self.merge(&mut run, decided, &mut on_match);
            }
        })
    }

    /// Decides one chunk's rows (the first at upload row `base`) under one read lock.
    fn decide(&self, rows: &[Hashed], base: u64) -> Decided {
        let mut d = Decided {
            rows: rows.len() as u64,
            counts: AudienceCounts::default(),
            candidates: Vec::new(),
            decided_at_len: 0,
        };
        // The chunk's own counts: from 0, at most one per row of the chunk (at most
        // `MAX_CHUNK`), so plain adds; `merge` adds them to the run's saturating.
        let counts = &mut d.counts;
        // Once the ledger has failed (and denies decisions), no row is decided: each
        // well-formed one is denied as `authorize` denies it, unknown or not.
        let state = if self.ledger.denies_decisions() {
            Err(Denied::LedgerFailed)
        } else {
            self.ledger.state().read().map_err(|_| Denied::Unavailable)
        };
        match state {
            Err(reason) => {
                for h in rows {
                    match h {
                        None => counts.malformed += 1,
                        Some(_) => counts.denied.count(&reason),
                    }
                }
            }
            Ok(state) => {
                d.decided_at_len = state.len;
                let query = state.query::<P>(self.recipient);
                for (i, (row, h)) in (base..).zip(rows).enumerate() {
                    if i % WARM == 0 {
                        // The next group's memory, read ahead (see `State::warm`).
                        let ahead = warm_group(rows, i).iter().flatten();
                        std::hint::black_box(state.warm(&query, ahead.map(|(_, l)| l)));
                    }
                    let Some((kind, lookup)) = h else {
                        counts.malformed += 1;
                        continue;
                    };
                    // Stamped per decision, as `authorize` does: never earlier than a time
                    // an earlier decision read (with the ticker, a load).
                    match state.decide_query(
                        &query,
                        lookup,
                        || self.ledger.stamp(),
                        || self.ledger.now_deciding(),
                    ) {
                        Ok((evidence, subject, lapses)) => d.candidates.push((
                            subject,
                            *lookup,
                            lapses,
                            AudienceMatch {
                                row,
                                kind: *kind,
                                evidence,
                            },
                        )),
                        Err(Denied::UnknownIdentifier) => counts.unknown += 1,
                        Err(reason) => counts.denied.count(&reason),
                    }
                }
            }
        }
        self.ledger.save_time_floor_if_due();
        d
    }

    /// Adds a decided chunk to the run, with no lock held: records its matches and hands
    /// them to `on_match`, the first row of each subject not reported yet.
    fn merge(&self, run: &mut Run, decided: Decided, on_match: &mut impl FnMut(AudienceMatch)) {
        let Decided {
            rows,
            counts: c,
            candidates,
            decided_at_len,
        } = decided;
        let counts = &mut run.counts;
        counts.add_chunk(rows, &c);
        let record = self.ledger.records_decisions();
        for (subject, lookup, lapses, m) in candidates {
            // Decided again, just before it is handed out, if the ledger recorded any
            // change since (with two threads a decided chunk may wait while more of the
            // upload is read, and every chunk waits for the callbacks of its earlier
            // matches) or the consent it rests on has lapsed since: no match is handed
            // out after a withdrawal or erasure was acknowledged, or after its consent
            // expired. Without either, one atomic load.
            // (Against the length its own decision read: a later match of the chunk is
            // not vouched for by an earlier one decided again.)
            // Nor after the ledger failed (with decisions denied): a failed sync adds no
            // entry, so only this load sees it.
            let changed = self.ledger.applied_hint() != decided_at_len;
            let lapsed = lapses.is_some_and(|at| self.ledger.now() >= at);
            let failed = self.ledger.denies_decisions();
            let (subject, m) = if changed || lapsed || failed {
                match self.decide_again(&lookup, m) {
                    Ok(again) => again,
                    Err(Denied::UnknownIdentifier) => {
                        counts.unknown = counts.unknown.saturating_add(1);
                        continue;
                    }
                    Err(reason) => {
                        counts.denied.count(&reason);
                        continue;
                    }
                }
            } else {
                (subject, m)
            };
            // Subject indices are below the state's subject count: the set grows to
            // what the matches need, a bit per subject.
            let Some((w, bit)) = seen_bit(&mut run.seen, subject) else {
                counts.denied.unavailable = counts.denied.unavailable.saturating_add(1);
                continue;
            };
            if *w & bit != 0 {
                counts.duplicates = counts.duplicates.saturating_add(1);
                continue;
            }
            // A match is a use: recorded as configured; one that cannot be recorded is
            // not handed out, and the subject stays unreported (a later row of it may
            // match, as a later `authorize` would allow it).
            if record && self.ledger.record(&m.evidence, self.recipient).is_err() {
                counts.denied.unavailable = counts.denied.unavailable.saturating_add(1);
                continue;
            }
            *w |= bit;
            counts.matched = counts.matched.saturating_add(1);
            on_match(m);
        }
    }
}

impl<P: Purpose> AudienceMatcher<'_, P> {
    /// The match `m` (of the identifier with lookup `lookup`) decided again now, under a
    /// read lock of its own.
    fn decide_again(&self, lookup: &Pseudonym, m: AudienceMatch) -> Result<(u32, AudienceMatch), Denied> {
        if self.ledger.denies_decisions() {
            return Err(Denied::LedgerFailed);
        }
        let state = self.ledger.state().read().map_err(|_| Denied::Unavailable)?;
        let query = state.query::<P>(self.recipient);
        let decided = state.decide_query(
            &query,
            lookup,
            || self.ledger.stamp(),
            || self.ledger.now_deciding(),
        );
        drop(state);
        self.ledger.save_time_floor_if_due();
        let (evidence, subject, _) = decided?;
        Ok((subject, AudienceMatch { evidence, ..m }))
    }
}

/// The rows read ahead at row `i`: the group of [`WARM`] rows from there, and no more,
/// so that a chunk of malformed rows (which reading ahead skips) is not walked again
/// for every group (quadratic in the chunk size, under the read lock).
fn warm_group(rows: &[Hashed], i: usize) -> &[Hashed] {
    rows.get(i..i.saturating_add(WARM).min(rows.len()))
        .unwrap_or_default()
}

/// The word and bit of `subject` in the bit set of reported subjects, grown to hold it.
fn seen_bit(seen: &mut Vec<u64>, subject: u32) -> Option<(&mut u64, u64)> {
    let word = usize::try_from(subject / 64).ok()?;
    if seen.len() <= word {
        seen.resize(word.checked_add(1)?, 0);
    }
    seen.get_mut(word).map(|w| (w, 1u64 << (subject % 64)))
}

/// The running totals of one upload.
struct Run {
    counts: AudienceCounts,
    /// One bit per subject index: subjects already reported in this upload.
    seen: Vec<u64>,
}

/// One decided chunk: its counts (all but `uploaded`, `matched` and `duplicates`) and
/// its allowed rows, with their subjects' indices, in upload order: recorded and handed
/// out when the chunk is merged, the first of each subject.
struct Decided {
    rows: u64,
    counts: AudienceCounts,
    /// Allowed rows: subject index, lookup pseudonym (to decide again), when the
    /// consent allowing it lapses (if it does), the match.
    candidates: Vec<(u32, Pseudonym, Option<Timestamp>, AudienceMatch)>,
    /// The state's length the decisions read, compared with [`Ledger::applied_hint`]
    /// before each hand-out.
    decided_at_len: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn guesses_kinds() {
        assert_eq!(IdentifierKind::guess("a@b.c"), IdentifierKind::Email);
        assert_eq!(IdentifierKind::guess("+1 555"), IdentifierKind::Phone);
        assert_eq!(IdentifierKind::guess(""), IdentifierKind::Phone);
    }

    #[test]
    fn reading_ahead_reads_one_group_whatever_follows() {
        let junk: Vec<Hashed> = vec![None; 10 * WARM + 3];
        assert_eq!(warm_group(&junk, 0).len(), WARM);
        assert_eq!(warm_group(&junk, 10 * WARM).len(), 3);
        assert!(warm_group(&junk, junk.len()).is_empty());
        assert!(warm_group(&junk, usize::MAX).is_empty());
    }

    #[test]
    fn totals_of_counts_a_caller_set_saturate() {
        let mut counts = AudienceCounts::default();
        counts.denied.no_consent = u64::MAX;
        counts.denied.withdrawn = 1;
        assert_eq!(counts.denied.total(), u64::MAX);
        assert!(counts.to_string().contains(&u64::MAX.to_string()));
    }

    #[test]
    fn counts_display_holds_only_numbers() {
        let mut c = AudienceCounts {
            uploaded: 10,
            malformed: 1,
            unknown: 2,
            matched: 3,
            duplicates: 1,
            ..AudienceCounts::default()
        };
        c.denied.count(&Denied::NoConsent {
            purpose: "advertising",
        });
        c.denied.count(&Denied::Withdrawn {
            purpose: "advertising",
            at: 4,
        });
        c.denied.count(&Denied::NotCollectedForPurpose {
            purpose: "advertising",
        });
        assert_eq!(c.denied.total(), 3);
        let shown = c.to_string();
        assert!(shown.starts_with("uploaded 10, malformed 1, unknown 2, matched 3, duplicates 1, denied 3"));
        assert!(!shown.contains('@') && !shown.contains('+'));
    }

    /// Merging a chunk's counts into the run's added `uploaded` saturating but the
    /// others, and a denial, with a plain add: near the top they overflowed (a panic in
    /// debug builds).
    #[test]
    fn merged_counts_saturate() {
        let denied = |n| DeniedCounts {
            not_collected_for_purpose: n,
            no_consent: n,
            withdrawn: n,
            expired: n,
            recipient_not_covered: n,
            subject_erased: n,
            unavailable: n,
            ledger_failed: n,
        };
        let counts = |n| AudienceCounts {
            uploaded: n,
            malformed: n,
            unknown: n,
            matched: n,
            duplicates: n,
            denied: denied(n),
        };
        let mut run = counts(u64::MAX - 1);
        run.add_chunk(5, &counts(5));
        assert_eq!(
            run,
            AudienceCounts {
                matched: u64::MAX - 1,
                duplicates: u64::MAX - 1,
                ..counts(u64::MAX)
            }
        );
        run.denied.count(&Denied::NoConsent {
            purpose: "advertising",
        });
        assert_eq!(run.denied, denied(u64::MAX));
        let mut one = AudienceCounts::default();
        one.add_chunk(3, &counts(1));
        assert_eq!(
            one,
            AudienceCounts {
                uploaded: 3,
                matched: 0,
                duplicates: 0,
                ..counts(1)
            }
        );
    }
}

//! Recipient-bound delivery: data decided for one recipient reaches only that recipient.
//!
//! The incident: an API bug handed private messages meant for one registered developer
//! app to another. A [`Use`] records the recipient it was decided for, and two ways of
//! sending build on it:
//!
//! - [`Use::deliver_to`] checks the recipient at run time and refuses any other with a
//!   [`Misdelivery`];
//! - a [`Channel`] (from [`Ledger::channel`]) makes the check a compile-time one: every
//!   channel has its own brand, a [`Parcel`] authorized through one channel carries
//!   that brand, and [`Channel::send`] accepts only parcels of its own brand. Mixing up
//!   two channels does not compile:
//!
//! ```compile_fail,E0521
//! # use consent_ledger::*;
//! fn route(ledger: &Ledger, phone: &Identifier<Security>, a: &Recipient, b: &Recipient) {
//!     ledger.channel(a, |to_a| {
//!         ledger.channel(b, |to_b| {
//!             if let Ok(parcel) = to_a.authorize(phone) {
//!                 to_b.send(parcel, |value| value.len()); // a parcel for `a` sent to `b`
//!             }
//!         })
//!     });
//! }
//! ```
//!
//! ```
//! # use consent_ledger::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let ledger = Ledger::builder(dir.path()).signing_key(SigningKey::generate())
//! #     .pseudonym_key(PseudonymKey::generate()).open()?;
//! let alice = SubjectId::new("user-1")?;
//! let phone = Identifier::<Security>::phone("+15550100001")?;
//! ledger.collect(&alice, &phone, RecipientScope::first_party())?;
//! let sent = ledger.channel(&Recipient::FirstParty, |me| -> Result<usize, Denied> {
//!     let parcel = me.authorize(&phone)?;
//!     Ok(me.send(parcel, |value| value.len()))
//! })?;
//! assert_eq!(sent, 12);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::marker::PhantomData;

use crate::decision::{Denied, Evidence, Use};
use crate::identifier::{Identifier, IdentifierKind};
use crate::ledger::Ledger;
use crate::purpose::Purpose;
use crate::recipient::Recipient;

/// A refused delivery: the use was decided for another recipient. Recipients are
/// companies and registered apps, not people, so both are named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the use was decided for {intended}, not for {attempted}: delivery refused")]
pub struct Misdelivery {
    /// The recipient the use was decided for.
    pub intended: Recipient,
    /// The recipient the delivery was attempted to.
    pub attempted: Recipient,
}

/// An invariant lifetime that names one channel (it cannot be shortened or lengthened,
/// so two channels' brands never unify).
type Brand<'c> = PhantomData<fn(&'c ()) -> &'c ()>;

/// A delivery channel to one recipient, open for the duration of a
/// [`Ledger::channel`] call. See the [`delivery` module](crate::delivery).
pub struct Channel<'l, 'r, 'c> {
    ledger: &'l Ledger,
    recipient: &'r Recipient,
    _brand: Brand<'c>,
}

impl fmt::Debug for Channel<'_, '_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("recipient", self.recipient)
            .finish_non_exhaustive()
    }
}

/// A use authorized through a [`Channel`], deliverable only through that channel.
pub struct Parcel<'a, 'c, P: Purpose> {
    allowed: Use<'a, P>,
    _brand: Brand<'c>,
}

impl<P: Purpose> fmt::Debug for Parcel<'_, '_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Parcel").field(&self.allowed).finish()
    }
}

impl<P: Purpose> Parcel<'_, '_, P> {
    /// What the decision rested on.
    pub fn evidence(&self) -> &Evidence {
        self.allowed.evidence()
    }

    /// The kind of identifier.
    pub fn kind(&self) -> IdentifierKind {
        self.allowed.kind()
    }
}

impl Ledger {
    /// Opens a delivery channel to `recipient` and runs `f` with it. Parcels authorized
    /// through the channel can be sent only through it, and cannot leave `f`.
    pub fn channel<'r, T>(
        &self,
        recipient: &'r Recipient,
        f: impl for<'c> FnOnce(Channel<'_, 'r, 'c>) -> T,
    ) -> T {
        f(Channel {
            ledger: self,
            recipient,
            _brand: PhantomData,
        })
    }
}

impl<'r, 'c> Channel<'_, 'r, 'c> {
    /// The recipient this channel delivers to.
    pub fn recipient(&self) -> &'r Recipient {
        self.recipient
    }

    /// Decides, now, whether `identifier` may be used for its purpose by this channel's
    /// recipient ([`Ledger::authorize`]).
    ///
    /// # Errors
    /// [`Denied`] with the reason.
    pub fn authorize<'a, P: Purpose>(
        &self,
        identifier: &'a Identifier<P>,
    ) -> Result<Parcel<'a, 'c, P>, Denied>
    where
        'r: 'a,
    {
        let allowed = self.ledger.authorize(identifier, self.recipient)?;
        Ok(Parcel {
            allowed,
            _brand: PhantomData,
        })
    }

    /// Hands the parcel's value to `f` for delivery to this channel's recipient. The
    /// brand guarantees the parcel was decided for this recipient, so this cannot fail.
    pub fn send<P: Purpose, R>(&self, parcel: Parcel<'_, 'c, P>, f: impl FnOnce(&str) -> R) -> R {
        f(parcel.allowed.value())
    }
}

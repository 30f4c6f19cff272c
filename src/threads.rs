//! Helper threads that the operating system may refuse.
//!
//! `std::thread::Scope::spawn` panics when no thread can be started (too many threads,
//! no memory for a stack). Open, `verify` and two-thread audience matching start
//! helpers; they use [`spawn_scoped`] instead, which reports the refusal, so that the
//! caller can do without the helper or report an error.

use std::thread::{Builder, Scope, ScopedJoinHandle};

/// Runs `work` on a new thread of `scope` named `name`; an error, and `work` dropped
/// unrun, when the operating system refuses a thread.
pub(crate) fn spawn_scoped<'scope, T, F>(
    scope: &'scope Scope<'scope, '_>,
    name: &str,
    work: F,
) -> std::io::Result<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    if refused(name) {
        return Err(std::io::Error::other("thread refused (test)"));
    }
    Builder::new().name(name.to_owned()).spawn_scoped(scope, work)
}

#[cfg(test)]
thread_local! {
    /// Set by tests: [`spawn_scoped`] called on this thread refuses to start a thread
    /// of this name (any name if empty), as an operating system out of threads would.
    static REFUSE: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn refused(name: &str) -> bool {
    REFUSE.with(|r| r.get().is_some_and(|r| r.is_empty() || r == name))
}

#[cfg(not(test))]
fn refused(_name: &str) -> bool {
    false
}

/// Runs `f` with every [`spawn_scoped`] on this thread refused.
#[cfg(test)]
pub(crate) fn with_threads_refused<R>(f: impl FnOnce() -> R) -> R {
    with_thread_refused("", f)
}

/// Runs `f` with [`spawn_scoped`] on this thread refusing threads named `name` (every
/// thread if `name` is empty).
#[cfg(test)]
pub(crate) fn with_thread_refused<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REFUSE.with(|r| r.set(None));
        }
    }
    REFUSE.with(|r| r.set(Some(name)));
    let _reset = Reset;
    f()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn runs_the_work_on_another_thread() {
        let here = std::thread::current().id();
        let out = std::thread::scope(|s| {
            let h = spawn_scoped(s, "t", || std::thread::current().id()).unwrap();
            h.join().unwrap()
        });
        assert_ne!(out, here);
    }

    #[test]
    fn a_refusal_is_reported_and_the_work_not_run() {
        let ran = std::sync::atomic::AtomicBool::new(false);
        let refused = with_threads_refused(|| {
            std::thread::scope(|s| {
                spawn_scoped(s, "t", || ran.store(true, std::sync::atomic::Ordering::SeqCst)).is_err()
            })
        });
        assert!(refused && !ran.load(std::sync::atomic::Ordering::SeqCst));
        // Only inside `with_threads_refused`.
        std::thread::scope(|s| assert!(spawn_scoped(s, "t", || ()).is_ok()));
        // One name refused, others started.
        with_thread_refused("u", || {
            std::thread::scope(|s| {
                assert!(spawn_scoped(s, "u", || ()).is_err());
                assert!(spawn_scoped(s, "t", || ()).is_ok());
            })
        });
    }

    use crate::{
        Advertising, Identifier, Ledger, OpenError, PseudonymKey, Recipient, RecipientScope, SigningKey,
        Snapshots, SubjectId,
    };

    fn open(dir: &std::path::Path, snapshots: Snapshots) -> Result<Ledger, OpenError> {
        Ledger::builder(dir)
            .signing_key(SigningKey::from_bytes(&[7; 32]))
            .pseudonym_key(PseudonymKey::from_bytes([9; 32]))
            .snapshots(snapshots)
            .open()
    }

    /// With no thread to be had, open fails with a storage error (it replays the log on
    /// two threads, both from a snapshot and without), `verify` and two-thread audience
    /// matching do their work on the calling thread and answer as with threads; nothing
    /// panics (from review r106).
    #[test]
    fn with_threads_refused_nothing_panics_and_answers_agree() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<String> = (0..300).map(|i| format!("person{i}@example.com")).collect();
        let snapshots = Snapshots::OnClose { min_new_entries: 1 };
        {
            let l = open(dir.path(), snapshots).unwrap();
            for i in 0..200u32 {
                let s = SubjectId::new(&format!("acct-{i}")).unwrap();
                let id = Identifier::<Advertising>::email(&format!("person{i}@example.com")).unwrap();
                l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
                if i % 3 != 0 {
                    l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                        .unwrap();
                }
            }
        }
        for snapshots in [snapshots, Snapshots::Off] {
            let refused = with_threads_refused(|| open(dir.path(), snapshots));
            match refused {
                Err(OpenError::Storage(e)) => assert!(e.context().contains("thread"), "{e}"),
                other => panic!("{snapshots:?}: {:?}", other.map(|_| ())),
            }
        }
        let l = open(dir.path(), Snapshots::Off).unwrap();
        let acme = Recipient::partner("acme-ads").unwrap();
        let with = l
            .audience::<Advertising>(&acme)
            .threads(2)
            .chunk_size(16)
            .collect(&rows);
        let without = with_threads_refused(|| {
            l.audience::<Advertising>(&acme)
                .threads(2)
                .chunk_size(16)
                .collect(&rows)
        });
        let subjects = |m: &[crate::AudienceMatch]| {
            m.iter()
                .map(|m| (m.row(), m.subject().clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(subjects(&with.0), subjects(&without.0));
        assert_eq!(with.1, without.1);
        assert_eq!(with.1.matched, 133);
        let verified = l.verify().unwrap();
        let refused = with_threads_refused(|| l.verify()).unwrap();
        assert_eq!((verified.entries, verified.head), (refused.entries, refused.head));
    }
}

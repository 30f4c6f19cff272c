//! `ledger_audit`: a command-line tool for operators and auditors.
//!
//! Run it with `--help` (or `help`) for its commands, options and exit status: the
//! text is [`USAGE`].
//!
//! Try it: `cargo run --example two_factor_vs_ads /tmp/demo`, then
//! `cargo run --example ledger_audit -- verify /tmp/demo/ledger`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use consent_ledger::{
    is_valid_purpose_id, verify_receipt, verify_receipt_against, AuditError, Change, Hypothesis, ImpactQuery,
    Inspector, Ledger, OpenError, PseudonymKey, ReadError, Receipt, Recipient, SigningKey, StorageError,
    SubjectId, Timestamp, VerifyingKey,
};
use serde_json::json;

type Error = Box<dyn std::error::Error>;

/// What `--help` prints.
const USAGE: &str = "usage: ledger_audit <command> [--json] ...   (cargo run --example ledger_audit -- ...)

  verify DIR                                  full check, with a progress bar
  prefix DIR                                  the intact prefix of a damaged log
  checkpoint DIR --keys KEYS                  sign and print a checkpoint
  key --keys KEYS                             the current public key (hex)
  history DIR --keys KEYS SUBJECT             one subject's consent history
  receipt DIR --keys KEYS SEQ [--withdraw TEXT]
                                              a consent receipt for entry SEQ (JSON);
                                              TEXT tells the person how to withdraw
  verify-receipt FILE PUBKEY_HEX [--against DIR --keys KEYS]
                                              check a receipt offline; PUBKEY_HEX
                                              must be the ledger's current key (`key`
                                              gives it): an older one vouches for nothing.
                                              With --against, also against the ledger's
                                              latest checkpoint (a key revoked since the
                                              receipt was made), under its current key
  impact DIR --keys KEYS --from MS --until MS [--purpose ID] [--partner NAME]
         [--assume never:GIVEN_FOR:USED_FOR] [--assume withdrawals-immediate]
         [--assume void-grants:FROM_MS:UNTIL_MS]

`DIR` is a ledger directory; `KEYS` a directory holding `signing.key` (32-byte
seed) and `pseudonym.key` (32 bytes), as `two_factor_vs_ads DIR` keeps them in
`DIR/keys`. Times are milliseconds since the Unix epoch. Exit status: 0 when every
check passed, 1 when a check failed (including a receipt refused because the log
does not vouch for the entry, and a log found broken when it is read or opened), 2
for a usage or I/O error. Commands that open the ledger with its keys check the
whole log first and do not open one that fails: opening would rewrite a damaged
database in place.

`impact` refuses what would make it answer another question than the one typed:
a purpose id that is not valid or that no entry of the log names (a misspelling),
a partner that neither a decision record nor an entry's scope names, an option
given twice (only `--assume` adds up), and an empty window (`--from` not before
`--until`). Messages never quote a value that could be a phone number or an
email typed in the wrong place.
";

/// Longest receipt file read: the longest JSON `Receipt::from_json` reads (a receipt is
/// a few KiB; its proofs grow with the log's size only logarithmically).
const MAX_RECEIPT_BYTES: u64 = consent_ledger::MAX_RECEIPT_JSON_LEN as u64;

/// What was being done when `source` failed; `main` prints the whole chain.
#[derive(Debug)]
struct Context {
    what: String,
    source: Error,
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Wraps an error with what was being done.
fn context<E: Into<Error>>(what: impl Into<String>) -> impl FnOnce(E) -> Error {
    move |e| {
        Box::new(Context {
            what: what.into(),
            source: e.into(),
        })
    }
}

/// The ledger in `dir`, read-only and keyless.
fn inspect(dir: &str) -> Result<Inspector, Error> {
    Inspector::open(dir).map_err(context(format!("cannot read the ledger in {}", shown_path(dir))))
}

/// The ledger in `dir` read as [`inspect`] does, and its log checked in full: what a
/// command that then opens the ledger itself runs first. Opening runs sled's recovery
/// on the directory, which rewrites a damaged database in place (dropping everything
/// after the damage): a log that fails its check is not opened, so that the evidence
/// stays as it was found.
fn inspect_checked(dir: &str) -> Result<Inspector, Error> {
    let inspector = inspect(dir)?;
    inspector.verify().map_err(context(format!(
        "the log in {} fails its check; not opened (run verify or prefix)",
        shown_path(dir)
    )))?;
    Ok(inspector)
}

/// Whether `e` is (or was caused by) a broken log: a check that failed (exit 1), not a
/// usage or I/O error (exit 2).
fn is_integrity(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        // (A storage error is matched inside its variant: `OpenError` and `ReadError`
        // pass its source through, so it is not itself in the chain.)
        let broken = match e.downcast_ref::<OpenError>() {
            Some(OpenError::Integrity(_) | OpenError::CorruptMetadata(_)) => true,
            Some(OpenError::Storage(s)) => s.is_corruption(),
            _ => match e.downcast_ref::<ReadError>() {
                Some(ReadError::Integrity(_)) => true,
                Some(ReadError::Storage(s)) => s.is_corruption(),
                _ => e
                    .downcast_ref::<StorageError>()
                    .is_some_and(StorageError::is_corruption),
            },
        };
        if broken {
            return true;
        }
        next = e.source();
    }
    false
}

/// What the log's entries name: every purpose id (collections, consents,
/// withdrawals, lapses), and every partner a collection's or a grant's scope names.
struct Named {
    purposes: BTreeSet<String>,
    partners: BTreeSet<String>,
}

fn named_in_log(inspector: &Inspector) -> Result<Named, Error> {
    let mut out = Named {
        purposes: BTreeSet::new(),
        partners: BTreeSet::new(),
    };
    for (_, h) in inspector.entries(u64::MAX)? {
        match h.change {
            Change::Collected { purpose, scope, .. } | Change::Granted { purpose, scope, .. } => {
                out.purposes.insert(purpose);
                out.partners.extend(
                    scope
                        .recipients()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(partner_name),
                );
            }
            Change::Withdrawn { purpose } | Change::Expired { purpose } => {
                out.purposes.insert(purpose);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `path` for a message, unless it may be a phone number or an email typed in the
/// wrong place: an '@', a leading '+', six digits or more (a path with a date in it is
/// not shown either, which only makes the message less precise), anything but ASCII
/// (full-width "＋１５５５…" or "alice＠example.com"), or a part the library's rule for
/// subject ids refuses as contact details ("alice at example.com").
fn shown_path(path: &str) -> String {
    let digits = path.chars().filter(char::is_ascii_digit).count();
    let refused_part = path
        .split(['/', '\\'])
        .any(|part| !part.is_empty() && part != "." && part != ".." && SubjectId::new(part).is_err());
    if path.contains('@')
        || path.trim_start().starts_with('+')
        || digits >= 6
        || !path.is_ascii()
        || refused_part
    {
        "(a path not shown: it may be personal data)".to_owned()
    } else {
        path.to_owned()
    }
}

/// The names of `set`, comma-separated, or "none".
fn listed(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".to_owned()
    } else {
        set.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

fn partner_name(r: &Recipient) -> Option<String> {
    match r {
        Recipient::Partner(name) => Some(name.as_str().to_owned()),
        _ => None,
    }
}

/// `value` quoted for a message when it cannot be personal data (empty, or a short word of
/// letters, digits, '-', '_' or '.', with a letter, as purpose ids and commands
/// are); otherwise a note that it is not shown: a phone number or an email typed in
/// the wrong place must not end up in a log.
fn shown(value: &str) -> String {
    let word = value.is_empty()
        || (1..=64).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && value.chars().any(|c| c.is_ascii_alphabetic())
            && value.chars().filter(char::is_ascii_digit).count() < 6;
    if word {
        format!("{value:?}")
    } else {
        "(not shown: it may be personal data)".to_owned()
    }
}

/// `id` as a purpose id, refused unless valid (checked before the ledger is read).
fn purpose_arg(id: &str, what: &str) -> Result<String, Error> {
    if is_valid_purpose_id(id) {
        Ok(id.to_owned())
    } else {
        Err(format!(
            "{what}: {} is not a purpose id (1 to 64 of a-z, 0-9, '-', '_', '.', such as \
             \"advertising\")",
            shown(id)
        )
        .into())
    }
}

/// Writes `text` and a newline to stdout. A reader that went away (`ledger_audit ... |
/// head`) is not an error: the output is for it alone, and the exit status still
/// tells the verdict.
fn out(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(context("writing the output")(e)),
        _ => Ok(()),
    }
}

/// A check that ran and failed (exit 1), as opposed to an error (exit 2).
struct Failed(String);

struct Args {
    json: bool,
    keys: Option<PathBuf>,
    options: Vec<(String, String)>,
    positional: Vec<String>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args, Error> {
    let mut out = Args {
        json: false,
        keys: None,
        options: Vec::new(),
        positional: Vec::new(),
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => out.json = true,
            "--keys" => {
                let dir = args.next().ok_or("--keys needs a directory")?;
                if out.keys.replace(dir.into()).is_some() {
                    return Err("--keys given more than once".into());
                }
            }
            o if o.starts_with("--") => {
                // "--name=value" is not this tool's spelling, and its value must not be
                // quoted back (it may be the personal data typed in the wrong place).
                if let Some((name, _)) = o.split_once('=') {
                    return Err(format!(
                        "{}: write an option's value after a space (--name VALUE), not after '='",
                        shown(name.trim_start_matches('-'))
                    )
                    .into());
                }
                let v = args
                    .next()
                    .ok_or_else(|| format!("--{} needs a value", shown(o.trim_start_matches('-'))))?;
                out.options.push((o.trim_start_matches("--").to_owned(), v));
            }
            _ => out.positional.push(a),
        }
    }
    Ok(out)
}

impl Args {
    fn pos(&self, i: usize, what: &str) -> Result<&str, Error> {
        self.positional
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing {what}").into())
    }

    fn opt(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn opts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.options
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The existing ledger in `dir`: a missing or mistyped directory is an error, never
    /// a new ledger (whose empty history would read as "nobody affected").
    fn ledger(&self, dir: &str) -> Result<Ledger, Error> {
        let keys = self.keys.as_deref().ok_or("this command needs --keys KEYS")?;
        let (s, p) = load_keys(keys)?;
        drop(inspect_checked(dir)?);
        Ledger::builder(dir)
            .signing_key(s)
            .pseudonym_key(p)
            .open()
            .map_err(context(format!("cannot open the ledger in {}", shown_path(dir))))
    }
}

fn load_keys(dir: &Path) -> Result<(SigningKey, PseudonymKey), Error> {
    let read32 = |name: &str| -> Result<[u8; 32], Error> {
        let path = dir.join(name);
        std::fs::read(&path)
            .map_err(|e| format!("{}: {e}", shown_path(&path.to_string_lossy())))?
            .try_into()
            .map_err(|_| format!("{name} is not 32 bytes").into())
    };
    Ok((
        SigningKey::from_bytes(&read32("signing.key")?),
        PseudonymKey::from_bytes(read32("pseudonym.key")?),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Result<[u8; 32], Error> {
    // Hex digits only (`from_str_radix` alone would take "+6" for 06).
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a public key is 64 hex digits".into());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        let pair = s.get(2 * i..2 * i + 2).ok_or("bad hex")?;
        *b = u8::from_str_radix(pair, 16).map_err(|_| "bad hex")?;
    }
    Ok(out)
}

/// Refuses an empty or inverted window `[from, until)`.
fn check_window(from: Timestamp, until: Timestamp, from_name: &str, until_name: &str) -> Result<(), Error> {
    if from < until {
        Ok(())
    } else {
        Err(format!(
            "{from_name} is not before {until_name}: the window [{from_name}, {until_name}) is empty"
        )
        .into())
    }
}

fn millis(s: Option<&str>, what: &str) -> Result<Timestamp, Error> {
    let s = s.ok_or_else(|| format!("missing --{what} (milliseconds since the epoch)"))?;
    Ok(Timestamp::from_millis(number(s).ok_or_else(|| {
        format!("--{what}: not a number of milliseconds")
    })?))
}

/// `s` as a number written in ASCII digits alone (`str::parse` also takes a leading
/// '+', so "+15550109999" would read as a number and come back in messages).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Prints `human` or `machine`.
fn emit(a: &Args, human: String, machine: serde_json::Value) -> Result<(), Error> {
    if a.json {
        out(&machine.to_string())
    } else {
        out(&human)
    }
}

/// What each command takes: its number of positional arguments (the command
/// included), its options, and whether it needs `--keys`.
fn usage_of(command: &str) -> Option<(usize, &'static [&'static str], bool)> {
    Some(match command {
        "verify" | "prefix" => (2, &[], false),
        "checkpoint" => (2, &[], true),
        "key" => (1, &[], true),
        "history" => (3, &[], true),
        "receipt" => (3, &["withdraw"], true),
        "verify-receipt" => (3, &["against"], true),
        "impact" => (2, &["from", "until", "purpose", "partner", "assume"], true),
        _ => return None,
    })
}

fn run(a: &Args) -> Result<Result<(), Failed>, Error> {
    let command = a.pos(
        0,
        "command (verify, prefix, checkpoint, key, history, receipt, verify-receipt, impact)",
    )?;
    // A misspelled option or a stray argument is a usage error, never silently
    // dropped (an impact query without its hypothesis would answer another question).
    if let Some((positional, options, keys)) = usage_of(command) {
        if let Some((name, _)) = a
            .options
            .iter()
            .find(|(name, _)| !options.contains(&name.as_str()))
        {
            return Err(format!("{command} takes no option {}", shown(name)).into());
        }
        // Given twice, one of the two would be dropped; only hypotheses add up.
        if let Some((name, _)) = a
            .options
            .iter()
            .enumerate()
            .find(|(i, (name, _))| name != "assume" && a.options.iter().skip(i + 1).any(|(n, _)| n == name))
            .map(|(_, o)| o)
        {
            return Err(format!("{command}: --{name} given more than once").into());
        }
        if let Some(extra) = a.positional.get(positional) {
            return Err(format!(
                "{command}: unexpected argument {} (argument {} after the command)",
                shown(extra),
                positional
            )
            .into());
        }
        if a.keys.is_some() && !keys {
            return Err(format!("{command} takes no --keys").into());
        }
    }
    match command {
        "verify" => {
            let dir = a.pos(1, "ledger directory")?;
            let inspector = inspect(dir)?;
            let total = inspector.len()?.max(1);
            let show = !a.json;
            // The progress bar is a courtesy: a closed stderr does not stop the check.
            let result = inspector.verify_with_progress(|done| {
                if show {
                    let width = 40u64;
                    let filled = (done.min(total) * width / total) as usize;
                    let mut stderr = std::io::stderr().lock();
                    let _ = write!(
                        stderr,
                        "\r[{}{}] {done}/{total}",
                        "#".repeat(filled),
                        " ".repeat(width as usize - filled)
                    );
                    let _ = stderr.flush();
                }
            });
            if show {
                let _ = writeln!(std::io::stderr());
            }
            match result {
                Ok(r) => {
                    let untrusted: Vec<_> = r
                        .untrusted
                        .iter()
                        .map(|u| json!({"from": u.from, "to": u.to, "revoked_by": u.revoked_by}))
                        .collect();
                    // Entries signed by a revoked key fail the check: not "ok".
                    let ranges: Vec<String> = r
                        .untrusted
                        .iter()
                        .map(|u| format!("{}..={} (revoked by entry {})", u.from, u.to, u.revoked_by))
                        .collect();
                    emit(
                        a,
                        format!(
                            "{}: {} entries, {} signing key(s), head {}{}",
                            if r.untrusted.is_empty() { "ok" } else { "FAILED" },
                            r.entries,
                            r.keys,
                            hex(&r.head),
                            if r.untrusted.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    "\nUNTRUSTED: entries signed by a revoked key: {}",
                                    ranges.join(", ")
                                )
                            }
                        ),
                        json!({"ok": r.untrusted.is_empty(), "entries": r.entries, "keys": r.keys,
                               "head": hex(&r.head), "untrusted": untrusted}),
                    )?;
                    Ok(if r.untrusted.is_empty() {
                        Ok(())
                    } else {
                        Err(Failed("entries signed by a revoked key".into()))
                    })
                }
                Err(e) => {
                    emit(
                        a,
                        format!("FAILED: {e}"),
                        json!({"ok": false, "error": e.to_string()}),
                    )?;
                    Ok(Err(Failed(e.to_string())))
                }
            }
        }
        "prefix" => {
            let inspector = inspect(a.pos(1, "ledger directory")?)?;
            let p = inspector.valid_prefix()?;
            let entries = inspector.entries(p.len)?;
            let list: Vec<_> = entries
                .iter()
                .map(|(s, h)| {
                    json!({"seq": h.seq, "subject": s.as_str(), "time": h.timestamp.to_string(),
                                     "change": h.change.to_string(),
                                     "untrusted_revoked_by": h.untrusted().map(|u| u.revoked_by)})
                })
                .collect();
            let problem = p.problem.as_ref().map(ToString::to_string);
            let untrusted: Vec<_> = p
                .untrusted
                .iter()
                .map(|u| json!({"from": u.from, "to": u.to, "revoked_by": u.revoked_by}))
                .collect();
            let revoked = (!p.untrusted.is_empty()).then(|| {
                let ranges: Vec<String> = p
                    .untrusted
                    .iter()
                    .map(|u| format!("{}..={} (revoked by entry {})", u.from, u.to, u.revoked_by))
                    .collect();
                format!("signed by a revoked key: entries {}", ranges.join(", "))
            });
            emit(
                a,
                format!(
                    "intact prefix: entries 0..{}{}{}",
                    p.len,
                    problem
                        .as_deref()
                        .map(|e| format!(", then: {e}"))
                        .unwrap_or_default(),
                    revoked.as_deref().map(|r| format!("; {r}")).unwrap_or_default()
                ),
                json!({"intact": p.len, "problem": problem, "untrusted": untrusted, "entries": list}),
            )?;
            Ok(match problem.or(revoked) {
                None => Ok(()),
                Some(e) => Err(Failed(e)),
            })
        }
        "checkpoint" => {
            let l = a.ledger(a.pos(1, "ledger directory")?)?;
            let cp = l.checkpoint()?;
            let revoked: Vec<_> = cp
                .revocations()
                .iter()
                .map(|r| json!({"key": hex(&r.key), "from": r.from}))
                .collect();
            emit(
                a,
                // The note exactly as signed: `emit` adds the last newline, and a note
                // with a blank line after its signatures does not open.
                cp.text().strip_suffix('\n').unwrap_or(cp.text()).to_owned(),
                json!({"origin": cp.origin(), "size": cp.size(), "root": hex(&cp.root()),
                       "revoked": revoked, "note": cp.text()}),
            )?;
            Ok(Ok(()))
        }
        "key" => {
            let keys = a.keys.as_deref().ok_or("key needs --keys KEYS")?;
            let (s, _) = load_keys(keys)?;
            let k = hex(&s.verifying_key().to_bytes());
            emit(a, k.clone(), json!({"public_key": k}))?;
            Ok(Ok(()))
        }
        "history" => {
            let l = a.ledger(a.pos(1, "ledger directory")?)?;
            let subject = SubjectId::new(a.pos(2, "subject id")?)?;
            let h = l.history(&subject)?;
            let untrusted = |e: &consent_ledger::HistoryEntry| {
                e.untrusted()
                    .map(|u| format!("  UNTRUSTED: signed by a key revoked by entry {}", u.revoked_by))
                    .unwrap_or_default()
            };
            let human: Vec<String> = h
                .iter()
                .map(|e| {
                    format!(
                        "#{:<6} {}  {}  ({:?}){}",
                        e.seq,
                        e.timestamp,
                        e.change,
                        e.actor,
                        untrusted(e)
                    )
                })
                .collect();
            let machine: Vec<_> = h
                .iter()
                .map(|e| {
                    json!({"seq": e.seq, "time": e.timestamp.to_string(), "change": e.change.to_string(),
                                "actor": format!("{:?}", e.actor),
                                "untrusted_revoked_by": e.untrusted().map(|u| u.revoked_by)})
                })
                .collect();
            emit(
                a,
                human.join("\n"),
                json!({"subject": subject.as_str(), "history": machine}),
            )?;
            Ok(Ok(()))
        }
        "receipt" => {
            let l = a.ledger(a.pos(1, "ledger directory")?)?;
            let seq = number(a.pos(2, "entry position")?).ok_or("SEQ is a number")?;
            l.sync()?;
            let how = a
                .opt("withdraw")
                .unwrap_or("Use the privacy settings page of the application.");
            match l.receipt(seq, how) {
                Ok(r) => {
                    out(&r.to_json())?;
                    Ok(Ok(()))
                }
                // The log does not vouch for the entry (signed by a revoked key) or is
                // broken: a failed check, not a usage error.
                Err(ReadError::Integrity(e)) => {
                    emit(
                        a,
                        format!("FAILED: no receipt for entry {seq}: {e}"),
                        json!({"ok": false, "entry": seq, "error": e.to_string()}),
                    )?;
                    Ok(Err(Failed(e.to_string())))
                }
                // Not quoted: the number typed may not be an entry's.
                Err(e) => Err(context("no receipt for the entry asked for")(e)),
            }
        }
        "verify-receipt" => {
            let file = a.pos(1, "receipt file")?;
            // Bounded: the file is anyone's, and a receipt is small.
            let mut bytes = Vec::new();
            std::fs::File::open(file)
                .and_then(|f| f.take(MAX_RECEIPT_BYTES + 1).read_to_end(&mut bytes))
                .map_err(context(format!("cannot read {}", shown_path(file))))?;
            if bytes.len() as u64 > MAX_RECEIPT_BYTES {
                return Err(format!(
                    "{} is longer than {} MiB: not a receipt (a receipt is a few KiB)",
                    shown_path(file),
                    MAX_RECEIPT_BYTES >> 20
                )
                .into());
            }
            let text = String::from_utf8(bytes)
                .map_err(context(format!("{} is not UTF-8 text", shown_path(file))))?;
            let key_hex = a.pos(2, "public key (hex)")?.to_ascii_lowercase();
            let key = VerifyingKey::from_bytes(&unhex32(&key_hex)?)?;
            let receipt = Receipt::from_json(&text);
            let (checked, rests_on) = match a.opt("against") {
                None if a.keys.is_some() => {
                    return Err("verify-receipt takes --keys only with --against".into())
                }
                // The verdict rests on this key alone: whoever holds its private half
                // can make a receipt that passes.
                None => (
                    receipt.and_then(|r| verify_receipt(&r, &key)),
                    format!(
                        "verdict under key {key_hex}; it means something only if this is the ledger's \
                         current key (after a rotation an older key vouches for nothing: ask for a \
                         fresh receipt)"
                    ),
                ),
                Some(dir) => {
                    let l = a.ledger(dir)?;
                    l.sync()?;
                    let current = l.verifying_key()?;
                    let checked = if current != key {
                        Err(AuditError::Mismatch(
                            "the key given is not the ledger's current key",
                        ))
                    } else {
                        match receipt.and_then(|r| verify_receipt(&r, &key).map(|v| (r, v))) {
                            Err(e) => Err(e),
                            Ok((r, v)) => {
                                let latest = l.checkpoint()?;
                                // A receipt's tree larger than the log: the log was cut
                                // (or the receipt is another ledger's), a failed check.
                                match l.consistency_proof(v.checkpoint.size(), latest.size()) {
                                    Ok(proof) => verify_receipt_against(&r, &key, &latest, &proof),
                                    Err(ReadError::OutOfRange) => Err(AuditError::Mismatch(
                                        "the receipt's checkpoint covers more entries than this ledger holds",
                                    )),
                                    Err(e) => return Err(context("cannot prove consistency".to_string())(e)),
                                }
                            }
                        }
                    };
                    (
                        checked,
                        format!(
                            "verdict under key {key_hex}, checked against the ledger in {}",
                            shown_path(dir)
                        ),
                    )
                }
            };
            match checked {
                Ok(v) => {
                    emit(
                        a,
                        format!(
                            "ok: entry {} ({} of {:?} for subject {}) is in the log of {} at size {}\n{rests_on}",
                            v.entry_seq,
                            v.action,
                            v.purpose.as_deref().unwrap_or("-"),
                            v.subject,
                            v.checkpoint.origin(),
                            v.checkpoint.size()
                        ),
                        json!({"ok": true, "entry": v.entry_seq, "action": v.action, "purpose": v.purpose,
                               "subject": v.subject, "tree_size": v.checkpoint.size(), "key": key_hex}),
                    )?;
                    Ok(Ok(()))
                }
                Err(e) => {
                    emit(
                        a,
                        format!("FAILED: {e}\n{rests_on}"),
                        json!({"ok": false, "error": e.to_string(), "key": key_hex}),
                    )?;
                    Ok(Err(Failed(e.to_string())))
                }
            }
        }
        "impact" => {
            // Whatever would make the query ask something else than what was typed (a
            // misspelled purpose, an empty window) is refused: its answer would read
            // "nobody affected".
            let dir = a.pos(1, "ledger directory")?;
            let from = millis(a.opt("from"), "from")?;
            let until = millis(a.opt("until"), "until")?;
            check_window(from, until, "--from", "--until")?;
            let mut q = ImpactQuery::between(from, until);
            // Purpose ids asked about, each checked against the log below.
            let mut purposes: Vec<(String, String)> = Vec::new();
            if let Some(p) = a.opt("purpose") {
                let id = purpose_arg(p, "--purpose")?;
                q = q.purpose_id(&id);
                purposes.push((id, "--purpose".to_owned()));
            }
            if let Some(p) = a.opt("partner") {
                q = q.recipient(Recipient::partner(p)?);
            }
            for h in a.opts("assume") {
                let parts: Vec<&str> = h.split(':').collect();
                q = q.assume(match parts.as_slice() {
                    ["withdrawals-immediate"] => Hypothesis::WithdrawalsImmediate,
                    ["never", given, used] => {
                        let what = format!("--assume never:{}:{}", shown(given), shown(used));
                        let given_for = purpose_arg(given, &what)?;
                        let used_for = purpose_arg(used, &what)?;
                        purposes.push((given_for.clone(), what.clone()));
                        purposes.push((used_for.clone(), what));
                        Hypothesis::NeverConsented { given_for, used_for }
                    }
                    ["void-grants", from, until] => {
                        let from = millis(Some(from), "assume void-grants FROM")?;
                        let until = millis(Some(until), "assume void-grants UNTIL")?;
                        check_window(from, until, "void-grants FROM", "UNTIL")?;
                        Hypothesis::GrantsVoidBetween {
                            from,
                            until: Some(until),
                        }
                    }
                    _ => {
                        return Err(format!(
                            "--assume: unknown hypothesis {} (expected never:GIVEN_FOR:USED_FOR, \
                             withdrawals-immediate or void-grants:FROM_MS:UNTIL_MS)",
                            shown(h)
                        )
                        .into())
                    }
                });
            }
            let keys = a.keys.as_deref().ok_or("this command needs --keys KEYS")?;
            let (s, p) = load_keys(keys)?;
            let named = named_in_log(&inspect_checked(dir)?)?;
            if let Some((id, what)) = purposes.iter().find(|(id, _)| !named.purposes.contains(id)) {
                return Err(format!(
                    "{what}: no entry of the log names purpose {} (misspelled?); the log's \
                     purposes: {}",
                    shown(id),
                    listed(&named.purposes)
                )
                .into());
            }
            let l = Ledger::builder(dir)
                .signing_key(s)
                .pseudonym_key(p)
                .open()
                .map_err(context(format!("cannot open the ledger in {}", shown_path(dir))))?;
            // A partner nothing names (a misspelling) would also read "nobody affected":
            // known are the partners of the decision records and of the entries' scopes.
            if let Some(partner) = a.opt("partner") {
                let mut known = named.partners;
                for r in l.decision_records()? {
                    known.extend(partner_name(r.recipient()));
                }
                if !known.contains(partner) {
                    return Err(format!(
                        "--partner: no decision record and no entry names partner {} \
                         (misspelled?); the partners named: {}",
                        shown(partner),
                        listed(&known)
                    )
                    .into());
                }
            }
            let r = l.impact(&q)?;
            let unlawful: Vec<_> = r
                .unlawful
                .iter()
                .map(|u| {
                    let rec = &u.record;
                    json!({"subject": rec.subject().as_str(), "purpose": rec.purpose(),
                           "recipient": rec.recipient().to_string(), "uses": u.uses,
                           "uses_in_record": rec.count(),
                           "collected_at": rec.collected_at(), "allowed_by": rec.allowed_by(),
                           "first": rec.times().0.to_string(), "last": rec.times().1.to_string(),
                           "reason": format!("{:?}", u.reason)})
                })
                .collect();
            let by_recipient: Vec<_> = r
                .by_recipient
                .iter()
                .map(|(rec, n)| json!({"recipient": rec.to_string(), "uses": n}))
                .collect();
            emit(
                a,
                format!(
                    "{} uses in {} records, {} subjects; without valid consent under the hypotheses: {} uses, {} subjects{}{}",
                    r.uses,
                    r.records,
                    r.subjects.len(),
                    r.unlawful_uses,
                    r.unlawful_subjects.len(),
                    if r.uses_of_unknown_verdict > 0 {
                        format!(
                            " (and {} uses inside aggregates of unknown verdict)",
                            r.uses_of_unknown_verdict
                        )
                    } else {
                        String::new()
                    },
                    r.unlawful
                        .iter()
                        .map(|u| format!(
                            "\n  {} -> {} at {}: {:?}",
                            u.record.subject(),
                            u.record.recipient(),
                            u.record.times().0,
                            u.reason
                        ))
                        .collect::<String>()
                ),
                json!({"records": r.records, "uses": r.uses, "subjects": r.subjects.len(),
                       "by_recipient": by_recipient, "unlawful_uses": r.unlawful_uses,
                       "uses_of_unknown_verdict": r.uses_of_unknown_verdict,
                       "unlawful_subjects": r.unlawful_subjects.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                       "unlawful": unlawful}),
            )?;
            Ok(Ok(()))
        }
        other => Err(format!("unknown command {}", shown(other)).into()),
    }
}

/// Prints `error: ...` and every cause under it.
fn print_error(e: &Error) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        let _ = writeln!(stderr, "  caused by: {s}");
        source = s.source();
    }
}

fn main() -> ExitCode {
    // Arguments that are not UTF-8 (a path, say) are refused, not a panic.
    let utf8: Result<Vec<String>, _> = std::env::args_os().skip(1).map(|a| a.into_string()).collect();
    let Ok(utf8) = utf8 else {
        let _ = writeln!(std::io::stderr(), "error: an argument is not UTF-8");
        return ExitCode::from(2);
    };
    if matches!(utf8.first().map(String::as_str), Some("--help" | "-h" | "help")) {
        return match out(USAGE.trim_end()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(2),
        };
    }
    let args = match parse(utf8.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            print_error(&e);
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(Failed(why))) => {
            if !args.json {
                let _ = writeln!(std::io::stderr(), "check failed: {why}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            print_error(&e);
            // A log found broken when it was opened is a failed check too.
            ExitCode::from(if is_integrity(&*e) { 1 } else { 2 })
        }
    }
}

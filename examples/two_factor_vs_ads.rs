//! The story behind this crate: a phone number given for two-factor authentication
//! must never end up matched against an advertiser's customer list.
//!
//! Run: `cargo run --example two_factor_vs_ads [DIR]`
//!
//! With no argument the ledger lives in a fresh temporary directory, deleted at the end.
//! With `DIR`, the ledger is kept in `DIR/ledger` and its two keys in `DIR/keys`
//! (in a real deployment keys belong in a secret manager, never next to the data);
//! running again with the same `DIR` reopens the same ledger and appends to it. Each
//! run ends with Alice closing her account (an erasure), so that the next run tells the
//! story again with a new account for her; a run stopped before that (Ctrl-C, say) is
//! noted in `DIR/unfinished-account`, and the next run closes that account first.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use consent_ledger::{
    Advertising, Denied, Identifier, Ledger, PartnerSharing, PseudonymKey, Recipient, RecipientScope,
    Security, SigningKey, SubjectId, Use,
};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let (_temp, dir) = match std::env::args_os().nth(1) {
        Some(d) => (None, PathBuf::from(d)),
        None => {
            let t = tempfile::tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let (signing_key, pseudonym_key) = load_or_create_keys(&dir)?;
    let ledger = Ledger::builder(dir.join("ledger"))
        .signing_key(signing_key)
        .pseudonym_key(pseudonym_key)
        .open()?;
    println!(
        "Ledger opened at {} with {} entries.\n",
        dir.join("ledger").display(),
        ledger.len()
    );

    // A run stopped before its last step left its Alice holding the number: her
    // account is closed first, as that run would have.
    // (A file that cannot be read as an account id was cut short while being written,
    // before its run collected anything.)
    let unfinished = dir.join("unfinished-account");
    let earlier = fs::read_to_string(&unfinished)
        .ok()
        .and_then(|id| SubjectId::new(id.trim()).ok());
    if let Some(earlier) = earlier {
        ledger.erase(&earlier, consent_ledger::Actor::Subject)?;
        println!("An earlier run stopped before its end: {earlier}'s account is closed first.\n");
    }
    // A new account per run on a kept ledger (the last run's Alice was erased).
    let alice = SubjectId::new(&format!("account-{}", 1000 + ledger.len()))?;
    write_whole(&unfinished, alice.as_str().as_bytes())?;

    // 1. Alice turns on two-factor authentication and gives her phone number for it.
    let phone_2fa = Identifier::<Security>::phone("+1 (555) 010-9999")?;
    let r = ledger.collect(&alice, &phone_2fa, RecipientScope::first_party())?;
    println!("1. Alice gives her phone number for two-factor authentication.");
    println!("   Recorded as collected for \"security\" at entry {}.", r.seq);

    // 2. The login code path asks the ledger, and may use the number.
    println!("\n2. The 2FA code path asks to use it (recipient: the application itself).");
    match ledger.authorize(&phone_2fa, &Recipient::FirstParty) {
        Ok(use_) => send_sms(&use_, "Your login code is 482910"),
        Err(denied) => println!("   Unexpectedly denied: {denied}"),
    }

    // 3. The ad-matching code wants phone numbers for an advertiser's customer list.
    //
    //    Handing it Alice's 2FA identifier does not compile:
    //
    //        fn match_audience(phone: &Identifier<Advertising>) { ... }
    //        match_audience(&phone_2fa);
    //        // error[E0308]: mismatched types: expected `Identifier<Advertising>`,
    //        //               found `Identifier<Security>`
    //
    //    (tests/ui/wrong_purpose.rs keeps that case under test.) There is no From, Into
    //    or cast between purposes either. So a careless engineer re-wraps the raw
    //    number as an advertising identifier instead:
    let acme = Recipient::partner("acme-ads")?;
    let rewrapped = Identifier::<Advertising>::phone("+15550109999")?;
    println!("\n3. Ad matching re-wraps the same number as an advertising identifier");
    println!("   and asks to use it for partner \"acme-ads\".");
    match ledger.authorize(&rewrapped, &acme) {
        Ok(_) => println!("   ALLOWED: this would be the incident."),
        Err(denied) => {
            println!("   Denied: {denied}.");
            assert!(matches!(denied, Denied::NotCollectedForPurpose { .. }));
            // (Not "never recorded": on a kept ledger an earlier run's Alice had it
            // collected for advertising, until her account was erased.)
            println!("   No collection of this number for advertising is in force: given for");
            println!("   security, it cannot be used for ads.");
        }
    }

    // 4. The honest path for a new purpose: ask the person. Only a new collection for
    //    advertising, plus her consent, allows it.
    println!("\n4. The honest path: the app asks Alice whether her number may be used for ads");
    println!("   with acme-ads. She agrees.");
    let c = ledger.collect(&alice, &rewrapped, RecipientScope::only(acme.clone()))?;
    let g = ledger.grant::<Advertising>(&alice, RecipientScope::only(acme.clone()), None)?;
    println!(
        "   Recorded: collected for \"advertising\" at entry {}, consent at entry {}.",
        c.seq, g.seq
    );
    match ledger.authorize(&rewrapped, &acme) {
        Ok(use_) => println!(
            "   Now allowed, under consent entry {} (decided at ledger position {}).",
            use_.evidence().allowed_by(),
            use_.evidence().position()
        ),
        Err(denied) => println!("   Unexpectedly denied: {denied}"),
    }
    let other = Recipient::partner("other-ads")?;
    if let Err(denied) = ledger.authorize(&rewrapped, &other) {
        println!("   Another advertiser is still refused: {denied}.");
    }

    // 5. "Share your data with business partners": on, then off.
    let email = Identifier::<PartnerSharing>::email("alice@example.com")?;
    ledger.collect(&alice, &email, RecipientScope::first_party())?;
    let partner = Recipient::partner("travel-partner")?;
    println!("\n5. Alice turns on \"share my data with business partners\".");
    let on = ledger.grant::<PartnerSharing>(&alice, RecipientScope::all_partners(), None)?;
    println!("   Consent recorded at entry {}.", on.seq);
    match ledger.authorize(&email, &partner) {
        Ok(use_) => println!(
            "   Sharing her email with travel-partner: allowed (consent entry {}).",
            use_.evidence().allowed_by()
        ),
        Err(denied) => println!("   Unexpectedly denied: {denied}"),
    }
    let off = ledger.withdraw::<PartnerSharing>(&alice)?;
    println!(
        "   Alice turns the setting off: withdrawal recorded at entry {}.",
        off.seq
    );
    match ledger.authorize(&email, &partner) {
        Ok(_) => println!("   STILL ALLOWED: the setting did not take effect."),
        Err(denied) => println!("   The very next decision: denied: {denied}."),
    }

    // 6. The evidence: the whole log verifies, and Alice can read her history.
    let report = ledger.verify()?;
    println!(
        "\n6. verify(): {} entries, every signature and hash link checked; head {}.",
        report.entries,
        hex_prefix(&report.head)
    );
    println!("   Alice's consent history:");
    for h in ledger.history(&alice)? {
        println!("   - entry {:>3}, {}: {}", h.seq, h.timestamp, h.change);
    }

    // 7. Alice closes her account: nothing in the ledger links to her numbers any more.
    let erased = ledger.erase(&alice, consent_ledger::Actor::Subject)?;
    println!(
        "\n7. Alice closes her account: erasure recorded at entry {}.",
        erased.seq
    );
    match ledger.authorize(&phone_2fa, &Recipient::FirstParty) {
        Ok(_) => println!("   STILL ALLOWED: the erasure did not take effect."),
        Err(denied) => println!("   Her 2FA number is now unknown to the ledger: {denied}."),
    }
    fs::remove_file(&unfinished)?;
    Ok(())
}

/// A stand-in for an SMS gateway. It needs the number, which only a `Use` exposes; it
/// prints a masked form, because an example's output is a log like any other.
fn send_sms(use_: &Use<'_, Security>, text: &str) {
    // A first-party use: the application's own code may read the value.
    let Ok(number) = use_.expose() else {
        println!("   Not a first-party use: the number is not exposed.");
        return;
    };
    let shown: String = number
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 2 < number.len() && i > 1 { '•' } else { c })
        .collect();
    println!(
        "   Allowed (collection entry {}). Sending SMS to {shown}: {text:?}",
        use_.evidence().allowed_by()
    );
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

/// Keys for a kept ledger are stored beside it, in `DIR/keys`; a fresh run creates
/// them. They are always read back from disk, never used from memory: the ledger is
/// opened only with keys that are stored, whoever stored them.
///
/// `DIR/keys` appears whole or not at all: both keys are written into a fresh
/// directory beside it (`DIR/keys.new-…`, unique to this run), synced, and that
/// directory is renamed to `DIR/keys`. Two first runs at once each make a pair; the
/// rename of the second fails because `DIR/keys` exists, and it uses the first's. A
/// run killed before its rename leaves only its `keys.new-…` directory, whose keys no
/// ledger was ever opened with (ledgers open with `DIR/keys` alone): later runs remove
/// it.
///
/// A `DIR/keys` missing a key file (left by an older version of this example) is an
/// error: making a new pair would destroy the key a ledger may have been made with.
fn load_or_create_keys(dir: &Path) -> Result<(SigningKey, PseudonymKey), Box<dyn Error>> {
    let keys = dir.join("keys");
    // An empty `DIR/keys` with no ledger beside it (an older version of this example
    // stopped before writing any key) holds nothing to lose. (`remove_dir` removes
    // only an empty directory.)
    if !dir.join("ledger").exists() && fs::read_dir(&keys).is_ok_and(|mut d| d.next().is_none()) {
        let _ = fs::remove_dir(&keys);
    }
    if !keys.exists() {
        create_keys(dir, &keys)?;
    }
    remove_unfinished_keys(dir);
    let signing = keys.join("signing.key");
    let pseudonym = keys.join("pseudonym.key");
    match (signing.exists(), pseudonym.exists()) {
        (true, true) => {}
        (false, false) if !keys.is_dir() => {
            return Err(format!("{} is not a directory", keys.display()).into());
        }
        _ => {
            return Err(format!(
                "{} holds only one of the two key files (or none): a new pair would lose \
                 the key a ledger in {} may have been made with. If no ledger was ever \
                 made there, remove {} and run again",
                keys.display(),
                dir.join("ledger").display(),
                keys.display()
            )
            .into())
        }
    }
    let s: [u8; 32] = read_small(&signing)?
        .try_into()
        .map_err(|_| format!("{} is not 32 bytes", signing.display()))?;
    let p: [u8; 32] = read_small(&pseudonym)?
        .try_into()
        .map_err(|_| format!("{} is not 32 bytes", pseudonym.display()))?;
    Ok((SigningKey::from_bytes(&s), PseudonymKey::from_bytes(p)))
}

/// A key file's bytes: at most a few more than a key, however long the file.
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Prefix of the directories new keys are written into before they become `DIR/keys`.
const NEW_KEYS: &str = "keys.new-";

/// Makes a key pair and moves it into place as `keys` (in `dir`), unless another run
/// did first.
fn create_keys(dir: &Path, keys: &Path) -> Result<(), Box<dyn Error>> {
    fs::create_dir_all(dir)?;
    // Unique to this run: nobody else writes into it or removes it while `keys` is
    // missing (see remove_unfinished_keys).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!("{NEW_KEYS}{}-{nanos}", std::process::id()));
    let made = write_key_dir(&tmp).and_then(|()| fs::rename(&tmp, keys));
    match made {
        Ok(()) => {}
        // Another run's keys got there first (or removed this run's directory once
        // they had): those are the keys.
        Err(_) if keys.exists() => {
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(format!("making the keys in {}: {e}", tmp.display()).into());
        }
    }
    // The rename (this run's or the other's) on disk before any ledger is made with
    // these keys.
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A new directory `tmp` (this user's only) holding a new key pair, synced.
fn write_key_dir(tmp: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(tmp)?;
    let s = SigningKey::generate();
    let p = PseudonymKey::generate();
    write_new(&tmp.join("signing.key"), &s.expose_seed(), true)?;
    write_new(&tmp.join("pseudonym.key"), p.expose_bytes(), true)?;
    fs::File::open(tmp)?.sync_all()
}

/// Removes the directories of key pairs that never became `DIR/keys` (runs killed
/// before their rename, or that lost to another run). Called once `DIR/keys` exists,
/// so none of them can become it any more; a run still writing one finds `DIR/keys`
/// and uses it. Best effort: a leftover is harmless, just untidy.
fn remove_unfinished_keys(dir: &Path) {
    let Ok(list) = fs::read_dir(dir) else { return };
    for entry in list.flatten() {
        if entry.file_name().to_string_lossy().starts_with(NEW_KEYS) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes `path` whole or not at all: to a temporary file, synced, renamed into
/// place, the directory synced. The caller makes sure no one else writes `path` at
/// the same time (here: the ledger's lock is held).
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, false)?;
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Creates `path` (which must not exist) holding `bytes`, synced; readable by this
/// user only if `secret`.
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

//! TEMPORARY stub, replaced by the real module.
#![allow(missing_docs)]
pub(crate) const MAX_INPUT_LEN: usize = 512;
pub(crate) fn phone(input: &str) -> Result<String, &'static str> {
    let t = input.trim();
    if !t.starts_with('+') {
        return Err("must start with '+' and a country code");
    }
    let d: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    if t.chars().any(|c| !(c.is_ascii_digit() || " -.()/+".contains(c))) {
        return Err("bad char");
    }
    if d.len() < 7 || d.len() > 15 {
        return Err("bad length");
    }
    Ok(format!("+{d}"))
}
pub(crate) fn email(input: &str) -> Result<String, &'static str> {
    let t = input.trim();
    let (l, d) = t.rsplit_once('@').ok_or("must contain exactly one '@'")?;
    if l.is_empty() || !d.contains('.') {
        return Err("bad");
    }
    Ok(format!("{l}@{}", d.to_lowercase()))
}
pub(crate) fn device_id(input: &str) -> Result<String, &'static str> {
    Ok(input.trim().to_ascii_lowercase())
}

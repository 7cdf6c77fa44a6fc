//! The built-in detectors: a regular expression finds candidates and, where the format has one, a
//! checksum or structure check keeps only real ones (Luhn for payment cards, mod-97 for IBANs, the SSA's
//! rules for SSNs, octet ranges for IPv4, `std::net` parsing for IPv6). The checks are what keeps order
//! numbers, dates and version strings from being flagged; `tests/data/guard/labelled.jsonl` measures it.

use std::sync::LazyLock;

use regex::Regex;

/// A built-in kind of sensitive data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builtin {
    /// Literal e-mail addresses.
    Email,
    /// Phone numbers: international (`+` and country code) and North American formats.
    Phone,
    /// Payment card numbers: a known issuer prefix, 13-19 digits, a valid Luhn check digit.
    Card,
    /// International bank account numbers with a valid length for their country and mod-97 checksum.
    Iban,
    /// US Social Security numbers written `ddd-dd-dddd` or `ddd dd dddd`, valid under the SSA's rules.
    Ssn,
    /// IPv4 and IPv6 addresses.
    Ip,
    /// Credentials: provider API keys, AWS access key ids, GitHub, Slack and Google tokens, JWTs, PEM
    /// private-key blocks.
    Secret,
}

impl Builtin {
    /// Every built-in detector, in the order overlapping findings are resolved (earlier wins): an IBAN
    /// can hold a Luhn-valid run of digits, so the longer, checksummed IBAN goes before the card.
    pub const ALL: [Builtin; 7] = [
        Builtin::Secret,
        Builtin::Iban,
        Builtin::Card,
        Builtin::Ssn,
        Builtin::Email,
        Builtin::Ip,
        Builtin::Phone,
    ];

    /// The name used in the config, metrics and placeholders.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::Card => "card",
            Builtin::Iban => "iban",
            Builtin::Ssn => "ssn",
            Builtin::Ip => "ip",
            Builtin::Secret => "secret",
        }
    }

    /// The detector called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Byte ranges of every finding in `text`.
    pub fn find(self, text: &str, out: &mut Vec<(usize, usize)>) {
        match self {
            Builtin::Email => push_all(&EMAIL, text, out),
            Builtin::Phone => find_phones(text, out),
            Builtin::Card => find_checked(&CARD, text, out, is_card),
            Builtin::Iban => find_checked(&IBAN, text, out, is_iban),
            Builtin::Ssn => find_checked(&SSN, text, out, is_ssn),
            Builtin::Ip => {
                find_checked(&IPV4, text, out, is_ipv4);
                find_checked(&IPV6, text, out, is_ipv6);
            }
            Builtin::Secret => {
                for re in SECRETS.iter() {
                    out.extend(
                        re.find_iter(text)
                            .filter(|m| !is_placeholder(m.as_str()))
                            .map(|m| (m.start(), m.end())),
                    );
                }
            }
        }
    }
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants; a bad one is a bug caught by the unit tests.
    Regex::new(pattern).expect("built-in detector pattern compiles")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b[a-z0-9][a-z0-9._%+\-]{0,63}@[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*\.[a-z]{2,24}\b",
    )
});

/// 13-19 digits, optionally grouped by single spaces or dashes, not inside a longer run of digits.
static CARD: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:^|[^0-9A-Za-z\-])([0-9](?:[ \-]?[0-9]){12,18})(?:$|[^0-9A-Za-z\-])"));

/// Two letters, two check digits, then 10-30 letters or digits, optionally in groups of four.
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:^|[^0-9A-Za-z])([A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?)(?:$|[^0-9A-Za-z])",
    )
});

static SSN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:^|[^0-9A-Za-z\-/.:])([0-9]{3}([\- ])[0-9]{2}([\- ])[0-9]{4})(?:$|[^0-9A-Za-z\-/.:]|[.:](?:$|[^0-9]))",
    )
});

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:^|[^0-9A-Za-z.])([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})(?:$|[^0-9A-Za-z.]|\.(?:$|[^0-9]))",
    )
});

/// Runs of hex digits and colons with at least two colons; `std::net::Ipv6Addr` decides.
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:^|[^0-9A-Za-z:])((?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})?)(?:$|[^0-9A-Za-z:])",
    )
});

/// Phone numbers: `+` and a country code with 7-15 digits in groups (a group may sit in parentheses);
/// North American `(415) 555-2671` / `415-555-2671` / `1-415-555-2671` / `415.555.2671`; and national
/// formats that start with a trunk `0` and group by spaces (`020 7946 0958`, `01 42 68 53 00`).
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:^|[^0-9A-Za-z+\-/.])(\+[1-9][0-9]{0,2}(?:[ .\-]?(?:\([0-9]{1,4}\)|[0-9]{1,4})){2,6}|(?:1[ .\-])?\([2-9][0-9]{2}\)[ .\-]?[2-9][0-9]{2}[ .\-][0-9]{4}|(?:1([.\-]))?[2-9][0-9]{2}([.\-])[2-9][0-9]{2}([.\-])[0-9]{4}|[2-9][0-9]{2} [2-9][0-9]{2} [0-9]{4}|0[1-9][0-9]{0,4}(?: [0-9]{2,4}){2,4})(?:$|[^0-9A-Za-z\-/:])",
    )
});

static SECRETS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // OpenAI (sk-, sk-proj-, sk-svcacct-) and Anthropic (sk-ant-) keys.
        r"\bsk-(?:proj-|ant-(?:api|admin)[0-9]{2}-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
        // AWS access key ids.
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA)[A-Z0-9]{16}\b",
        // GitHub tokens (classic and fine-grained).
        r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b",
        r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
        // Slack tokens: numeric workspace and user ids, then the secret.
        r"\bxox[abposr]-[0-9]{6,}-[0-9A-Za-z\-]{10,}",
        // Google API keys.
        r"\bAIza[0-9A-Za-z_\-]{35}",
        // Stripe secret and restricted keys.
        r"\b[rs]k_live_[0-9A-Za-z]{20,}",
        // JSON Web Tokens: header and payload are base64url JSON objects.
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        // PEM private keys, through the END line; or, cut off before it, a base64 body to the end of the text.
        r"-----BEGIN[A-Z ]{0,20} PRIVATE KEY-----(?s:.*?)-----END[A-Z ]{0,20} PRIVATE KEY-----",
        r"-----BEGIN[A-Z ]{0,20} PRIVATE KEY-----(?:\s|\\n)+[A-Za-z0-9+/=\s\\]{64,}\z",
    ]
    .iter()
    .map(|p| re(p))
    .collect()
});

fn push_all(re: &Regex, text: &str, out: &mut Vec<(usize, usize)>) {
    out.extend(re.find_iter(text).map(|m| (m.start(), m.end())));
}

/// Candidates are the patterns' first capture group; `check` keeps the real ones. Candidates can share
/// their delimiting character, so the search restarts right after each candidate instead of after the
/// whole match.
fn find_checked(re: &Regex, text: &str, out: &mut Vec<(usize, usize)>, check: fn(&str) -> bool) {
    let mut at = 0;
    while at <= text.len() {
        let Some(c) = re.captures_at(text, at) else {
            break;
        };
        let (Some(g), Some(whole)) = (c.get(1), c.get(0)) else {
            break;
        };
        if let Some(len) = longest_valid_prefix(g.as_str(), check) {
            out.push((g.start(), g.start() + len));
        }
        // Resume at the candidate's end so a trailing delimiter can start the next one.
        at = g.end().max(whole.start() + 1);
    }
}

/// The candidate, or its longest prefix that ends before a separator, that `check` accepts: a greedy
/// pattern can run a card number into the expiry date after it ("4111 1111 1111 1111 12"), and the real
/// number is then a prefix of whole groups.
fn longest_valid_prefix(s: &str, check: fn(&str) -> bool) -> Option<usize> {
    if check(s) {
        return Some(s.len());
    }
    s.char_indices()
        .rev()
        .filter(|&(_, c)| c == ' ' || c == '-')
        .map(|(i, _)| i)
        .find(|&i| check(&s[..i]))
}

fn find_phones(text: &str, out: &mut Vec<(usize, usize)>) {
    find_checked(&PHONE, text, out, is_phone);
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// The Luhn check over `d` (most significant digit first).
pub fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A card number: consistent grouping, 13-19 digits, a known issuer prefix with its lengths, Luhn.
fn is_card(s: &str) -> bool {
    // Mixed separators ("4111 1111-1111") are not how cards are written.
    if s.contains(' ') && s.contains('-') {
        return false;
    }
    let d = digits(s);
    let n = d.len();
    if !(13..=19).contains(&n) || !luhn(&d) {
        return false;
    }
    let prefix = |k: usize| d[..k].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (p2, p3, p4, p6) = (prefix(2), prefix(3), prefix(4), prefix(6));
    match d[0] {
        // Visa.
        4 => matches!(n, 13 | 16 | 19),
        // Mastercard 51-55 and 2221-2720; Mir 2200-2204.
        5 => (51..=55).contains(&p2) && n == 16,
        2 => ((2221..=2720).contains(&p4) || (2200..=2204).contains(&p4)) && (16..=19).contains(&n),
        // American Express 34/37; Diners 36, 38, 300-305; JCB 3528-3589.
        3 => {
            ((p2 == 34 || p2 == 37) && n == 15)
                || (p2 == 36 && (14..=19).contains(&n))
                || (p2 == 38 && (14..=16).contains(&n))
                || ((300..=305).contains(&p3) && (14..=19).contains(&n))
                || ((3528..=3589).contains(&p4) && (16..=19).contains(&n))
        }
        // Discover 6011, 644-649, 65, 622126-622925; UnionPay 62; Maestro 6304, 6759, 676x.
        6 => {
            (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || p2 == 62)
                && (16..=19).contains(&n)
                || (p4 == 6304 || p4 == 6759 || (6760..=6769).contains(&p4))
                    && (12..=19).contains(&n)
                || (622_126..=622_925).contains(&p6) && n == 16
        }
        _ => false,
    }
}

/// IBAN lengths by country (ISO 13616 registry, common countries).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "CR" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" => 22,
        "AE" | "GI" | "IL" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" => 31,
        "LC" => 32,
        _ => return None,
    })
}

/// An IBAN: the country's length and `mod 97 == 1` over the rearranged number.
fn is_iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() < 15 || iban_length(&compact[..2]) != Some(compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem = 0u32;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// An SSN: one separator used twice, and numbers the SSA issues (area not 000, 666 or 900-999; group
/// not 00; serial not 0000).
fn is_ssn(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 11 || b[3] != b[6] {
        return false;
    }
    let d = digits(s);
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// A documentation placeholder in a key's shape (`AKIAXXXXXXXXXXXXXXXX`, `sk-xxxx…`): a real key is
/// random, so no single character fills half of it.
fn is_placeholder(s: &str) -> bool {
    let body: Vec<u8> = s
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    let mut counts = [0usize; 256];
    for &b in &body {
        counts[usize::from(b)] += 1;
    }
    counts.iter().any(|&c| c * 2 > body.len())
}

fn is_ipv4(s: &str) -> bool {
    s.split('.')
        .all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255) && (o.len() == 1 || !o.starts_with('0')))
}

fn is_ipv6(s: &str) -> bool {
    // Times (12:30:45) and MAC-like pairs need `::` or eight groups to parse, so they do not pass.
    s.len() >= 3 && s.parse::<std::net::Ipv6Addr>().is_ok()
}

/// A phone number has 8-15 digits with a `+` (E.164), 10 or 11 in a national format starting with
/// `0`, and the North American 10 (11 with the leading `1`).
fn is_phone(s: &str) -> bool {
    let d = digits(s);
    let n = d.len();
    if s.starts_with('+') {
        (8..=15).contains(&n)
    } else if d.first() == Some(&0) {
        (10..=11).contains(&n)
    } else if d.first() == Some(&1) {
        n == 11
    } else {
        n == 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(b: Builtin, text: &str) -> Vec<&str> {
        let mut v = Vec::new();
        b.find(text, &mut v);
        v.into_iter().map(|(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn cards_need_luhn_and_an_issuer() {
        assert_eq!(
            found(Builtin::Card, "pay with 4111 1111 1111 1111."),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            found(Builtin::Card, "amex 3782-822463-10005"),
            ["3782-822463-10005"]
        );
        assert!(
            found(Builtin::Card, "order 4111111111111112").is_empty(),
            "Luhn fails"
        );
        assert!(
            found(Builtin::Card, "id 9111111111111111111").is_empty(),
            "no issuer 9"
        );
        assert!(
            found(Builtin::Card, "ref 41111111111111110000000").is_empty(),
            "too long a run"
        );
    }

    #[test]
    fn ibans_need_their_checksum_and_length() {
        assert_eq!(
            found(Builtin::Iban, "IBAN: DE89 3704 0044 0532 0130 00, thanks"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(
            found(Builtin::Iban, "GB29NWBK60161331926819"),
            ["GB29NWBK60161331926819"]
        );
        assert!(found(Builtin::Iban, "DE88 3704 0044 0532 0130 00").is_empty());
    }

    #[test]
    fn ssns_follow_the_rules() {
        assert_eq!(found(Builtin::Ssn, "SSN 536-90-4399"), ["536-90-4399"]);
        assert!(found(
            Builtin::Ssn,
            "SSN 666-90-4399 or 000-12-3456 or 912-34-5678"
        )
        .is_empty());
        assert!(found(Builtin::Ssn, "part 536-90/4399 536-90 4399").is_empty());
    }

    #[test]
    fn ips_but_not_versions_or_times() {
        assert_eq!(found(Builtin::Ip, "from 10.0.12.7: refused"), ["10.0.12.7"]);
        assert_eq!(
            found(Builtin::Ip, "host 2001:db8::8a2e:370:7334 up"),
            ["2001:db8::8a2e:370:7334"]
        );
        assert!(found(
            Builtin::Ip,
            "at 12:30:45 on v1.2.3 and 999.1.1.1 and 1.2.3.4.5"
        )
        .is_empty());
    }

    #[test]
    fn phones_but_not_dates_or_orders() {
        assert_eq!(
            found(Builtin::Phone, "call +44 20 7946 0958 today"),
            ["+44 20 7946 0958"]
        );
        assert_eq!(
            found(Builtin::Phone, "or (415) 555-2671."),
            ["(415) 555-2671"]
        );
        assert_eq!(
            found(Builtin::Phone, "cell: 415-555-2671"),
            ["415-555-2671"]
        );
        assert!(found(Builtin::Phone, "on 2024-03-15, order 4000123456, ext 4412").is_empty());
    }

    #[test]
    fn secrets_of_every_kind() {
        let text = "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz0123 and AKIAIOSFODNN7EXAMPLE";
        assert_eq!(found(Builtin::Secret, text).len(), 2);
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(found(Builtin::Secret, pem), [pem]);
        assert!(found(
            Builtin::Secret,
            "import sk-learn; key = YOUR_API_KEY; sk-..."
        )
        .is_empty());
    }

    #[test]
    fn emails_literal_only() {
        assert_eq!(
            found(Builtin::Email, "mail jane.doe+x@mail.example.co.uk!"),
            ["jane.doe+x@mail.example.co.uk"]
        );
        assert!(found(Builtin::Email, "jane at example dot com").is_empty());
    }
}

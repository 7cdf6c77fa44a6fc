#!/usr/bin/env python3
"""Builds tests/data/guard/labelled.jsonl, the labelled evaluation set for the sensitive-data guard.

Run with plain python3 (stdlib only):

    python3 tests/data/guard/build.py            # validate, write labelled.jsonl, print a summary
    python3 tests/data/guard/build.py --review   # also list phone-like strings left unlabelled

Every prompt below was written by hand for this file. Values that must be valid (card numbers, IBANs,
SSNs, API keys, JWTs, PEM blocks) and many near-misses are generated from a fixed seed, so the output is
identical on every run. Each line of the output is

    {"id": "g001", "text": "...", "findings": [{"detector": "card", "value": "4111 1111 1111 1111"}, ...]}

`value` is the exact substring of `text`; findings are listed in order of appearance, one per
occurrence (a value that appears twice in a prompt is listed twice). `findings` is empty when nothing in
the prompt is sensitive under the policy below.

LABEL POLICY
------------
email   A literal address `local@domain.tld` (the address only, no `<>`, `mailto:` or trailing
        punctuation). Example/test domains count. NOT: obfuscated forms ("john at example dot com",
        "jane[at]corp[dot]com"), masked ones ("j***@gmail.com"), `@handles`, decorators, npm scopes,
        `image@sha256:...` digests, addresses without a dotted domain.
phone   A telephone number presented as one: at least 7 digits and a phone-like format, i.e. an
        international number (`+` and country code, spaced, dashed or contiguous E.164) or a national
        number with the usual grouping (`(415) 555-2671`, `415-555-2671`, `415.555.2671`,
        `020 7946 0958`, `01 42 68 53 00`, `030 9018 2099`). Value runs from the first digit, `+` or `(` to
        the last digit. NOT: extensions ("ext. 4412"), room/desk numbers, dates, times, ZIP+4 codes,
        order/case/part/meeting numbers, quantities with thousands separators, bare digit runs that are
        not presented as a phone number, masked numbers.
card    A payment card number: a known issuer prefix (Visa 4; Mastercard 51-55 and 2221-2720; Amex 34/37;
        Discover 6011, 644-649, 65; JCB 3528-3589; Diners 300-305, 36, 38-39; UnionPay 62; Maestro 5018,
        5020, 5038, 5893, 6304, 6759, 6761-6763), 13-19 digits, optionally grouped with single spaces or
        dashes, and a valid Luhn check digit. Public test numbers (4111 1111 1111 1111, ...) count. NOT:
        Luhn failures, numbers starting 0/1/7/8/9, IMEIs/SIRETs/EANs outside those prefixes, last-4 or
        masked numbers, numbers shorter than 13 digits.
iban    Country code + 2 check digits + BBAN with the correct length for the country and a valid mod-97
        checksum, written contiguous or in groups of 4 separated by single spaces. NOT: wrong checksum
        (including the `00` check digits of templates), wrong length, BICs, VAT numbers, national account
        numbers or sort codes, masked IBANs.
ssn     A US Social Security number written `ddd-dd-dddd` or `ddd dd dddd` that is valid under SSA rules:
        area not 000, 666 or 900-999; group not 00; serial not 0000. NOT: invalid areas/groups/serials
        (ITINs start with 9), other groupings (EINs `12-3456789`, dates, part numbers), masked SSNs,
        9 contiguous digits.
ip      A syntactically valid IPv4 dotted quad (every octet 0-255; loopback, private and 0.0.0.0
        included; the address only, without `:port`) or an IPv6 address in full or compressed form with
        at least one hex group written (`::1` counts; a bare `::` in code paths does not). NOT: version
        numbers, OIDs (a dotted quad inside a longer dotted sequence), out-of-range octets, MAC
        addresses, times, invalid IPv6 (two `::`, too many groups), hostnames like localhost.
secret  A credential in one of these formats, complete: OpenAI `sk-` + 48 alphanumerics or `sk-proj-...`;
        Anthropic `sk-ant-api03-...`; AWS access key ids `AKIA`/`ASIA` + 16 (20 chars); GitHub `ghp_` + 36;
        Slack `xoxb-...`; Google `AIza` + 35 (39 chars); PEM private-key blocks from `-----BEGIN ...
        PRIVATE KEY-----` through the END line's final `-----` (indented or `\\n`-escaped bodies included);
        JWTs `eyJ<header>.eyJ<payload>.<signature>`. NOT: prefixes mentioned in prose, truncated or
        elided keys (`sk-...`, `sk-proj-...9fQk`), placeholders (`YOUR_API_KEY`, `xoxb-your-bot-token`,
        repeated-character masks like `AKIAXXXXXXXXXXXXXXXX`), words containing `sk-` (sk-learn,
        task-sk-2), public keys and certificates, lone BEGIN/END header lines, a JWT header alone,
        passwords and other secrets in formats not listed above.
"""

import base64
import ipaddress
import json
import os
import random
import re
import string
import sys
import textwrap

SEED = 20240515
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "labelled.jsonl")

rng = random.Random(SEED)

# --------------------------------------------------------------------------------------------------
# Checks shared by the generators and the validator
# --------------------------------------------------------------------------------------------------


def luhn_ok(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(partial):
    for c in "0123456789":
        if luhn_ok(partial + c):
            return c
    raise AssertionError


def known_iin(d):
    """True if the digit string starts with an issuer prefix listed in the policy."""
    p2, p3, p4 = int(d[:2]), int(d[:3]), int(d[:4])
    return (
        d[0] == "4"
        or 51 <= p2 <= 55
        or 2221 <= p4 <= 2720
        or p2 in (34, 37)
        or p4 == 6011
        or 644 <= p3 <= 649
        or p2 == 65
        or 3528 <= p4 <= 3589
        or 300 <= p3 <= 305
        or p2 in (36, 38, 39)
        or p2 == 62
        or p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763)
    )


def is_card(value):
    if not re.fullmatch(r"\d+(?:([ -])\d+(?:\1\d+)*)?", value):
        return False
    d = re.sub(r"[ -]", "", value)
    return 13 <= len(d) <= 19 and known_iin(d) and luhn_ok(d)


IBAN_LEN = {
    "AT": 20, "BE": 16, "CH": 21, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27, "GB": 22,
    "GR": 27, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "SE": 24,
}


def iban_mod97(compact):
    s = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97


def is_iban(value):
    if not (re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", value) or re.fullmatch(r"[A-Z]{2}\d{2}(?: [A-Z0-9]{4})* [A-Z0-9]{1,4}", value)):
        return False
    c = value.replace(" ", "")
    return IBAN_LEN.get(c[:2]) == len(c) and iban_mod97(c) == 1


def ssn_valid_parts(area, group, serial):
    a = int(area)
    return a != 0 and a != 666 and a < 900 and int(group) != 0 and int(serial) != 0


def is_ssn(value):
    m = re.fullmatch(r"(\d{3})([- ])(\d{2})\2(\d{4})", value)
    return bool(m) and ssn_valid_parts(m.group(1), m.group(3), m.group(4))


def is_ip(value):
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return False
    if addr.version == 4:
        return re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}", value) is not None
    return value != "::"


EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def is_email(value):
    return EMAIL_RE.fullmatch(value) is not None


def is_phone(value):
    if not re.fullmatch(r"[+(\d][\d ().\-]*\d", value):
        return False
    n = sum(c.isdigit() for c in value)
    return 7 <= n <= 15


PEM_RE = re.compile(
    r"-----BEGIN ((?:[A-Z]+ )*)PRIVATE KEY-----(?:\n|\\n)[\s\S]+?(?:\n|\\n)\s*-----END \1PRIVATE KEY-----"
)
SECRET_RES = [
    re.compile(r"sk-ant-api03-[A-Za-z0-9_\-]{93}AA"),
    re.compile(r"sk-proj-[A-Za-z0-9_\-]{40,}"),
    re.compile(r"sk-[A-Za-z0-9]{48}"),
    re.compile(r"(?:AKIA|ASIA)[A-Z2-7]{16}"),
    re.compile(r"ghp_[A-Za-z0-9]{36}"),
    re.compile(r"xoxb-\d{10,13}-\d{10,13}-[A-Za-z0-9]{24}"),
    re.compile(r"AIza[A-Za-z0-9_\-]{35}"),
    re.compile(r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"),
    PEM_RE,
]


def is_secret(value):
    return any(r.fullmatch(value) for r in SECRET_RES)


CHECKS = {
    "email": is_email, "phone": is_phone, "card": is_card, "iban": is_iban,
    "ssn": is_ssn, "ip": is_ip, "secret": is_secret,
}
DETECTORS = list(CHECKS)

# --------------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
B64 = string.ascii_letters + string.digits + "+/"


def rand_str(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def rand_digits(n):
    return "".join(rng.choice(string.digits) for _ in range(n))


CARD_BRANDS = {
    # brand: (prefix chooser, length)
    "visa": (lambda: "4", 16),
    "visa13": (lambda: "4", 13),
    "visa19": (lambda: "4", 19),
    "mc": (lambda: str(rng.randint(51, 55)), 16),
    "mc2": (lambda: str(rng.randint(2221, 2720)), 16),
    "amex": (lambda: rng.choice(["34", "37"]), 15),
    "discover": (lambda: "6011", 16),
    "discover65": (lambda: "65", 16),
    "discover644": (lambda: str(rng.randint(644, 649)), 16),
    "jcb": (lambda: str(rng.randint(3528, 3589)), 16),
    "diners": (lambda: rng.choice(["36", str(rng.randint(300, 305))]), 14),
    "unionpay": (lambda: "62", 16),
    "unionpay19": (lambda: "62", 19),
    "maestro": (lambda: rng.choice(["6759", "5018", "6304"]), 16),
}


def group_card(d, fmt):
    if fmt == "plain":
        return d
    sep = " " if fmt == "space" else "-"
    n = len(d)
    if n == 15:
        parts = [d[:4], d[4:10], d[10:]]
    elif n == 14:
        parts = [d[:4], d[4:10], d[10:]]
    elif n == 13:
        parts = [d[:4], d[4:8], d[8:]]
    else:
        parts = [d[i:i + 4] for i in range(0, n, 4)]
    return sep.join(parts)


def gen_card(spec):
    brand, fmt = (spec.split(",") + ["space"])[:2] if spec else ("visa", "space")
    prefix_fn, length = CARD_BRANDS[brand]
    while True:
        p = prefix_fn()
        partial = p + rand_digits(length - len(p) - 1)
        d = partial + luhn_check_digit(partial)
        # keep generated numbers away from famous test numbers and runs
        if len(set(d)) > 4:
            return group_card(d, fmt)


def gen_badluhn(spec):
    brand, fmt = (spec.split(",") + ["space"])[:2]
    prefix_fn, length = CARD_BRANDS[brand]
    p = prefix_fn()
    partial = p + rand_digits(length - len(p) - 1)
    good = luhn_check_digit(partial)
    bad = rng.choice([c for c in string.digits if c != good])
    return group_card(partial + bad, fmt)


def gen_badiin(spec):
    first, length, fmt = spec.split(",")
    length = int(length)
    partial = first + rand_digits(length - 2)
    d = partial + luhn_check_digit(partial)
    assert not known_iin(d)
    return group_card(d, fmt)


def gen_imei(spec):
    # TAC 35 2x.... sits just below the JCB range 3528-3589; Luhn-valid like every IMEI
    partial = "352" + str(rng.randint(0, 7)) + rand_digits(10)
    d = partial + luhn_check_digit(partial)
    assert not known_iin(d)
    return f"{d[:2]}-{d[2:8]}-{d[8:14]}-{d[14]}" if spec == "dash" else d


def gen_siret(spec):
    partial = "8" + rand_digits(12)
    d = partial + luhn_check_digit(partial)
    return f"{d[:3]} {d[3:6]} {d[6:9]} {d[9:]}"


BBAN = {
    # country: list of (kind, count) where kind is n = digit, a = upper letter, or a literal bank code list
    "AT": [("n", 16)],
    "BE": [("n", 12)],
    "CH": [("n", 17)],
    "DE": [("n", 18)],
    "DK": [("n", 14)],
    "ES": [("n", 20)],
    "FI": [("n", 14)],
    "FR": [("n", 23)],
    "GB": [(["NWBK", "BARC", "HBUK", "LOYD", "MIDL"], 1), ("n", 14)],
    "GR": [("n", 23)],
    "IE": [(["AIBK", "BOFI", "IPBS"], 1), ("n", 14)],
    "IT": [("a", 1), ("n", 22)],
    "LU": [("n", 16)],
    "NL": [(["ABNA", "INGB", "RABO", "TRIO"], 1), ("n", 10)],
    "NO": [("n", 11)],
    "PL": [("n", 24)],
    "PT": [("n", 21)],
    "SE": [("n", 20)],
}


def make_bban(cc, delta=0):
    out = ""
    for kind, n in BBAN[cc]:
        if isinstance(kind, list):
            out += rng.choice(kind)
        elif kind == "n":
            out += rand_digits(n)
        else:
            out += rand_str(string.ascii_uppercase, n)
    if delta > 0:
        out += rand_digits(delta)
    elif delta < 0:
        out = out[:delta]
    return out


def iban_with_check(cc, bban):
    rem = iban_mod97(cc + "00" + bban)
    return f"{cc}{98 - rem:02d}{bban}"


def fmt_iban(compact, fmt):
    if fmt == "plain":
        return compact
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


def gen_iban(spec):
    cc, fmt = (spec.split(",") + ["space"])[:2]
    return fmt_iban(iban_with_check(cc, make_bban(cc)), fmt)


def gen_iban_badcheck(spec):
    cc, fmt = (spec.split(",") + ["space"])[:2]
    good = iban_with_check(cc, make_bban(cc))
    cd = int(good[2:4])
    bad_cd = rng.choice([x for x in range(2, 99) if x != cd])
    bad = f"{cc}{bad_cd:02d}{good[4:]}"
    assert iban_mod97(bad) != 1
    return fmt_iban(bad, fmt)


def gen_iban_badlen(spec):
    cc, fmt = (spec.split(",") + ["space"])[:2]
    bad = iban_with_check(cc, make_bban(cc, delta=rng.choice([-1, 1])))
    assert iban_mod97(bad) == 1 and len(bad) != IBAN_LEN[cc]
    return fmt_iban(bad, fmt)


USED_SSN = set()


def gen_ssn(spec):
    fmt = spec or "dash"
    sep = "-" if fmt == "dash" else " "
    while True:
        area = rng.randint(1, 899)
        if area == 666:
            continue
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
        v = f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"
        if v.replace(sep, "-") not in ("078-05-1120", "219-09-9999", "123-45-6789") and v not in USED_SSN:
            USED_SSN.add(v)
            return v


def gen_ssn_bad(spec):
    kind, fmt = (spec.split(",") + ["dash"])[:2]
    sep = "-" if fmt == "dash" else " "
    area, group, serial = rng.randint(1, 899), rng.randint(1, 99), rng.randint(1, 9999)
    if area == 666:
        area = 665
    if kind == "area000":
        area = 0
    elif kind == "area666":
        area = 666
    elif kind == "area9xx":
        area = rng.randint(900, 999)
    elif kind == "group00":
        group = 0
    elif kind == "serial0000":
        serial = 0
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


FIRST = ["Ana", "Ben", "Chloe", "Dmitri", "Emeka", "Farah", "Gus", "Hana", "Ivo", "Jun"]


def gen_jwt(spec):
    alg = "RS256" if spec == "rs256" else "HS256"
    header = {"alg": alg, "typ": "JWT"}
    if alg == "RS256":
        header["kid"] = "k1"
    iat = 1714000000 + rng.randint(0, 3000000)
    payload = {
        "sub": "usr_" + rand_str(string.ascii_lowercase + string.digits, 10),
        "name": rng.choice(FIRST),
        "role": rng.choice(["admin", "member", "viewer"]),
        "iat": iat,
        "exp": iat + rng.choice([900, 3600, 86400]),
    }
    sig = bytes(rng.getrandbits(8) for _ in range(256 if alg == "RS256" else 32))
    enc = lambda o: b64url(json.dumps(o, separators=(",", ":")).encode())
    return f"{enc(header)}.{enc(payload)}.{b64url(sig)}"


PEM_KINDS = {
    "pem_rsa": ("RSA PRIVATE KEY", "MIIEowIBAAKCAQEA", 64, (7, 10)),
    "pem_pkcs8": ("PRIVATE KEY", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ", 64, (7, 10)),
    "pem_pkcs8enc": ("ENCRYPTED PRIVATE KEY", "MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI", 64, (6, 8)),
    "pem_ec": ("EC PRIVATE KEY", "MHcCAQEEI", 64, (3, 3)),
    "pem_openssh": ("OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW", 70, (5, 7)),
    "pem_public": ("PUBLIC KEY", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 64, (6, 6)),
    "pem_cert": ("CERTIFICATE", "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ", 64, (8, 11)),
}


def gen_pem(kind, spec):
    label, head, width, (lo, hi) = PEM_KINDS[kind]
    nlines = rng.randint(lo, hi)
    total = (width * nlines - rng.randint(5, 40)) // 4 * 4  # base64 text is a multiple of 4 long
    pad = rng.choice([0, 1, 2])
    body = head + rand_str(B64, total - len(head) - pad) + "=" * pad
    lines = [body[i:i + width] for i in range(0, len(body), width)]
    all_lines = [f"-----BEGIN {label}-----"] + lines + [f"-----END {label}-----"]
    if spec == "indent4":
        return "\n    ".join(all_lines)
    if spec == "escaped":
        return "\\n".join(all_lines)
    return "\n".join(all_lines)


def gen_secret(spec):
    kind, _, opt = (spec or "openai").partition(",")
    if kind == "openai":
        return "sk-" + rand_str(ALNUM, 48)
    if kind == "openai_proj":
        return "sk-proj-" + rand_str(URLSAFE, rng.randint(90, 120))
    if kind == "anthropic":
        return "sk-ant-api03-" + rand_str(URLSAFE, 93) + "AA"
    if kind in ("aws", "aws_asia"):
        return ("AKIA" if kind == "aws" else "ASIA") + rand_str(string.ascii_uppercase + "234567", 16)
    if kind == "github":
        return "ghp_" + rand_str(ALNUM, 36)
    if kind == "slack":
        return f"xoxb-{rand_digits(12)}-{rand_digits(13)}-{rand_str(ALNUM, 24)}"
    if kind == "google":
        return "AIzaSy" + rand_str(URLSAFE, 33)
    if kind == "jwt":
        return gen_jwt(opt)
    if kind.startswith("pem_"):
        return gen_pem(kind, opt)
    raise KeyError(kind)


def gen_uuid(spec):
    h = rand_str("0123456789abcdef", 32)
    h = h[:12] + "4" + h[13:16] + rng.choice("89ab") + h[17:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


GENERATED = {
    "card": gen_card,
    "iban": gen_iban,
    "ssn": gen_ssn,
    "secret": gen_secret,
}
NEAR_MISS = {
    "badluhn": gen_badluhn,
    "badiin": gen_badiin,
    "imei": gen_imei,
    "siret": gen_siret,
    "iban_badcheck": gen_iban_badcheck,
    "iban_badlen": gen_iban_badlen,
    "ssn_bad": gen_ssn_bad,
    "uuid": gen_uuid,
    "sha1": lambda s: rand_str("0123456789abcdef", 40),
    "sha256": lambda s: rand_str("0123456789abcdef", 64),
    "hex": lambda s: rand_str("0123456789abcdef", int(s)),
    "b64": lambda s: rand_str(B64, int(s)),
    "pem_public": lambda s: gen_pem("pem_public", s),
    "pem_cert": lambda s: gen_pem("pem_cert", s),
}

# --------------------------------------------------------------------------------------------------
# Template markup
#   ⟦det=literal⟧   a labelled finding written literally in the prompt
#   ⟦det|spec⟧      a labelled finding generated from spec (⟦det⟧ uses the default spec)
#   ⟦!kind|spec⟧    an unlabelled near-miss generated from spec
# --------------------------------------------------------------------------------------------------

MARK = re.compile(r"⟦(!?)([a-z0-9_]+)(?:([=|])(.*?))?⟧", re.S)


def render(template):
    text, findings, pos = "", [], 0
    for m in MARK.finditer(template):
        text += template[pos:m.start()]
        neg, kind, op, arg = m.group(1), m.group(2), m.group(3), m.group(4)
        if neg:
            value = NEAR_MISS[kind](arg)
        else:
            assert kind in CHECKS, kind
            value = arg if op == "=" else GENERATED[kind](arg)
            findings.append((len(text), kind, value))
        text += value
        pos = m.end()
    text += template[pos:]
    assert "⟦" not in text and "⟧" not in text, template[:80]
    return text, findings


PROMPTS = []


def T(s):
    """Adds one prompt template (dedented; surrounding blank lines stripped)."""
    PROMPTS.append(textwrap.dedent(s).strip("\n"))


# ==================================================================================================
# EMAIL
# ==================================================================================================

T("Can you draft a polite follow-up to ⟦email=maria.lopez@acme-logistics.com⟧ asking whether the revised freight quote (ref Q-2291) was approved? Keep it under 120 words.")
T("""
    Summarise this thread in three bullets:

    From: Daniel Kerr <⟦email=dkerr@northwind-traders.co.uk⟧>
    To: Accounts Payable <⟦email=ap@fabrikam-supplies.com⟧>
    Subject: RE: Invoice INV-2024-00417 overdue

    Hi team, we paid this on 12 March via BACS, remittance attached. Can you check and confirm the balance is now zero?
    Thanks, Dan
""")
T("Write a regex that validates email addresses. It should accept things like ⟦email=first.last+newsletter@sub.example.org⟧ but reject 'john at example dot com' and 'sara.n@'.")
T("""
    Clean up this CSV and tell me which rows have malformed emails:

    name,email,signup
    Ana Ruiz,⟦email=ana.ruiz@correo.es⟧,2024-01-14
    Tom Becker,tom.becker(at)web.de,2024-01-15
    Li Wei,⟦email=li.wei@outlook.com⟧,2024-01-15
    Sara N.,sara.n@,2024-01-16
    Omar Haddad,⟦email=o.haddad@haddad-consulting.ae⟧,2024-01-17
""")
T("My manager ⟦email=r.okafor@brightlane.io⟧ keeps getting bounce-backs when sending to our shared inbox. The bounce says '550 5.1.1 user unknown'. What does that mean and how do I fix it in Google Workspace?")
T("¿Puedes traducir al inglés este mensaje para el cliente? \"Hola, hemos recibido su solicitud de devolución. Por favor, envíe las fotos del producto dañado a ⟦email=devoluciones@tiendaluna.es⟧ indicando el número de pedido 558120.\"")
T("""
    Log excerpt from our auth service — why are these logins failing?

    2024-05-02T09:14:22Z WARN auth: invalid password user=⟦email=priya.natarajan@globex.com⟧ attempts=3
    2024-05-02T09:14:51Z WARN auth: account locked user=⟦email=s.brennan@globex.com⟧ attempts=5
    2024-05-02T09:15:03Z INFO auth: login ok user_id=88412 mfa=totp
""")
T("Write a Python function that masks emails so ⟦email=jane.doe@example.com⟧ becomes j***@example.com. Keep the domain intact.")
T("Peux-tu rédiger une réponse courte à ce client ? Il nous a écrit depuis ⟦email=claire.dubois@orange.fr⟧ pour se plaindre d'un retard de livraison de la commande n° 20240318-77.")
T("""
    Customer chat transcript — classify the intent:
    Agent: Thanks for contacting Contoso support, how can I help?
    Customer: hi i changed my email to ⟦email=mike_t1987@gmail.com⟧ but invoices still go to the old one
    Agent: I can update that. Can you confirm the last four digits of the card on file?
    Customer: 4417
""")
T("""
    Here's my git config output, why are my commits showing the wrong author?

    user.name=Kenji Watanabe
    user.email=⟦email=kenji.watanabe@corp.example.jp⟧
    core.editor=vim
    pull.rebase=true
""")
T("Write a SQL query that finds duplicate users whose emails differ only by case, e.g. ⟦email=Support@Initech.com⟧ vs ⟦email=support@initech.com⟧.")
T("""
    Proofread this signature block:

    --
    Hannah Schmidt | Head of Partnerships
    Lumen Analytics GmbH
    ⟦email=h.schmidt@lumen-analytics.de⟧ | ⟦phone=+49 89 2154 7730⟧
    www.lumen-analytics.de
""")
T("""
    The contact form posts to our webhook and we got this payload. Is the JSON valid?
    {"name": "Grace Ho", "email": "⟦email=grace.ho@pm.me⟧", "message": "Interested in the enterprise plan for 40 seats", "utm_source": "newsletter"}
""")
T("I'm getting 'SMTP AUTH failed' when sending from ⟦email=noreply@alerts.meridian-health.org⟧ through smtp.office365.com port 587 with STARTTLS. My nodemailer config is {host: 'smtp.office365.com', port: 587, secure: false}. What am I missing?")
T("Bitte fasse diese E-Mail zusammen: \"Sehr geehrte Damen und Herren, leider ist die Lieferung vom 04.03.2024 unvollständig angekommen. Bitte melden Sie sich unter ⟦email=einkauf@mueller-bau.de⟧ oder telefonisch unter ⟦phone=+49 711 4589 2216⟧. Mit freundlichen Grüßen, K. Müller\"")
T("Extract all email addresses from this text and return them as a JSON array: 'For press enquiries contact ⟦email=press@verdant.energy⟧; for careers, ⟦email=jobs@verdant.energy⟧. Please don't email ceo at verdant dot energy directly.'")
T("Python unittest failing: AssertionError: '⟦email=bob@example.com⟧' != '⟦email=Bob@Example.com⟧'. Should email comparison be case-insensitive?")
T("""
    Can you rewrite this reply so it sounds less defensive?

    "Hi Robert, as I said in my email of 3 June, the refund was processed on our side. If it hasn't arrived please write to ⟦email=refunds@kestrel-outdoor.com⟧ with your bank statement and we'll chase it. Regards, Tanya"
""")
T("In our Django app `send_mail(subject, body, '⟦email=no-reply@shopwave.app⟧', [user.email])` raises SMTPSenderRefused. What does that usually mean?")

# ==================================================================================================
# PHONE
# ==================================================================================================

T("Format this list of UK numbers consistently in E.164: ⟦phone=020 7946 0958⟧, ⟦phone=+44 20 7946 0321⟧, ⟦phone=07700 900123⟧.")
T("Customer left a voicemail, turn it into a ticket: 'Hi, this is Marcus Bell, my router keeps dropping every evening. Call me back at ⟦phone=(415) 555-2671⟧, any time after 3pm. Account ending 2291.'")
T("Our Twilio webhook logs show From=⟦phone=+14155552671⟧ To=⟦phone=+14155550199⟧ Body='STOP' Status=received. How should I handle opt-outs?")
T("Write a regex for North American numbers written like ⟦phone=212-555-0147⟧, ⟦phone=212.555.0183⟧ and ⟦phone=(212) 555-0162⟧. It must not match ZIP+4 codes like 10001-1234.")
T("Reformule ce message pour un client : « Votre technicien passera mardi entre 8h et 12h. En cas d'empêchement, appelez le ⟦phone=01 42 68 53 00⟧ ou le ⟦phone=+33 6 12 34 56 78⟧. »")
T("""
    Please summarise this support ticket:

    Ticket #88213
    Customer: Aisha Khan
    Phone: ⟦phone=+1 647 555 0134⟧
    Issue: double-charged for March subscription ($49.00 x2). Wants a refund of one charge. Prefers a callback between 10:00 and 12:00 EST.
""")
T("""
    Contact sheet for the offsite — put it into a markdown table:
    Venue: Hotel Arcadia, ⟦phone=+34 912 345 678⟧
    Catering: Sabores SL, ⟦phone=+34 934 87 65 43⟧
    Bus company: ⟦phone=+34 600 123 456⟧
""")
T("Kannst du diese Telefonnummern ins internationale Format bringen? Zentrale ⟦phone=030 9018 2099⟧, Vertrieb ⟦phone=+49 30 901820⟧, Mobil ⟦phone=0151 2345 6789⟧.")
T("Is this a scam text? 'Royal Mail: your parcel is held at customs. Pay the £2.99 fee within 24h or call ⟦phone=+44 7700 900461⟧.'")
T("Write a friendly out-of-office: I'm back on Monday 8 April; urgent issues go to my colleague Ravi on ⟦phone=+91 98765 43210⟧.")
T("""
    Data cleaning: normalise these phone fields to E.164 (assume US when there's no country code):
    ⟦phone=(303) 555-0178⟧
    ⟦phone=303-555-0112⟧
    ⟦phone=1-303-555-0145⟧
    ⟦phone=+1 (303) 555-0190⟧
""")
T("Our Japanese partner's business card says ⟦phone=+81 3-1234-5678⟧. What time is it in Tokyo when it's 9am in London?")
T("Summarise the call notes: spoke to the landlord (⟦phone=+61 2 9876 5432⟧) about the lease renewal. He wants a 5% increase, we countered at 2.5%. Follow up by 30/06.")
T("""
    SMS delivery failures from our gateway, do you see a pattern?
    2024-06-11 08:02:13 FAIL to=⟦phone=+447700900872⟧ code=30003
    2024-06-11 08:02:15 OK   to=⟦phone=+33612345690⟧
    2024-06-11 08:02:19 FAIL to=⟦phone=+4915123456708⟧ code=30005
    2024-06-11 08:02:24 FAIL to=⟦phone=+4917698765432⟧ code=30005
""")
T("Resume esta conversación de WhatsApp: Cliente: hola, el repartidor no encuentra mi casa, es la puerta verde al lado de la farmacia. Mi número es ⟦phone=+34 655 43 21 09⟧. Agente: Le llamamos en 5 minutos.")
T("Draft an SMS reminder under 160 characters: 'Hi {first_name}, your appointment at Riverside Dental is on {date} at {time}. Reply C to confirm or call ⟦phone=(617) 555-0143⟧.'")
T("""
    Here is a vCard, convert it to JSON:
    BEGIN:VCARD
    VERSION:3.0
    FN:Olivia Grant
    ORG:Grant & Hale LLP
    TEL;TYPE=work:⟦phone=+1-202-555-0186⟧
    EMAIL:⟦email=ogrant@granthale.law⟧
    END:VCARD
""")
T("Rewrite for clarity: 'For billing questions you call ⟦phone=0800 123 4567⟧ (free from UK landlines) which is open Monday to Friday 9-5 except bank holidays.'")
T("the delivery guy keeps calling ⟦phone=020 7946 0114⟧ which isn't even my number, mine is ⟦phone=07700 900 555⟧. how do i change it on the account?")
T("Extract the phone and the order number from: 'Order 7781-22 shipped today. Questions? Text us on ⟦phone=+353 87 123 4567⟧.'")
T("Corrige l'orthographe : « Bonjour, je souhaite annuler mon abonement. Vous pouvez me joindre au ⟦phone=06 98 76 54 32⟧ apres 18h. Merci d'avance »")
T("Our CRM stores numbers as ⟦phone=+1.312.555.0172⟧ (dots after the country code). Will Salesforce's click-to-dial handle that?")
T("""
    Transcript of an IVR complaint, write a short apology email:
    [00:00:05] Caller: yeah hi, I've been on hold forty minutes, my number is ⟦phone=(646) 555-0198⟧ and I want to cancel
    [00:00:19] Agent: I'm sorry for the wait, let me pull up the account.
""")

# ==================================================================================================
# CARD
# ==================================================================================================

T("Our Stripe integration test fails with 'card_declined' when using ⟦card=4000 0000 0000 0002⟧. Is that the expected test card for generic declines?")
T("""
    Customer support chat — summarise and mark urgent items:
    Customer: I was charged twice for order #A-55812. The card was ⟦card|visa,space⟧, expiry 09/27.
    Agent: I'm sorry about that. I've raised a refund request for the duplicate charge.
    Customer: how long will it take?
""")
T("""
    I exported transactions from our POS and need them anonymised before sending to the analyst:
    date,amount,card,merchant
    2024-02-01,12.50,⟦card|mc,plain⟧,Cafe Nero
    2024-02-01,88.00,⟦card|amex,plain⟧,Shell
    2024-02-02,4.20,⟦card|visa,plain⟧,TfL
""")
T("Write a function that validates card numbers with the Luhn algorithm. Test it on ⟦card=4111 1111 1111 1111⟧ (valid) and 4111 1111 1111 1112 (invalid).")
T("Un cliente nos escribió esto por chat, ¿cómo respondemos sin pedir más datos sensibles? \"Hola, quiero pagar la factura con mi tarjeta ⟦card|visa,dash⟧, caduca 11/26, el CVV es 382\"")
T("Debug this: our payment form rejects ⟦card|amex,space⟧ with 'invalid length'. The validation code is `if (num.replace(/\\s/g, '').length !== 16) return false;`")
T("Email to summarise: 'Hi, I'd like to update the card on file for account 22871 to ⟦card|mc2,space⟧ (exp 03/28). Please remove the old Visa ending 4242. Thanks, Peter'")
T("Can you check why this JCB card ⟦card|jcb,dash⟧ is flagged as 'unsupported brand' by our gateway? We accept Visa, Mastercard, Amex and Discover.")
T("""
    Order log from the legacy checkout (yes, it logged full PANs, we're fixing it):
    [2023-11-03 14:22:07] order=100234 pan=⟦card|discover,plain⟧ amt=59.99 status=AUTH
    [2023-11-03 14:25:51] order=100235 pan=⟦card|visa,plain⟧ amt=12.00 status=DECLINED
    How do we purge these from the logs and from the backups?
""")
T("Bitte antworte dem Kunden höflich: \"Meine Kreditkarte ⟦card|mc,space⟧ wurde belastet, aber die Bestellung 4711-0815 ist nie angekommen.\"")
T("Test data for QA: Visa ⟦card=4242 4242 4242 4242⟧, Mastercard ⟦card=5555 5555 5555 4444⟧, Amex ⟦card=3782 822463 10005⟧. Are these safe to put in our public docs?")
T("A Diners Club card ⟦card|diners,space⟧ fails our BIN lookup. What lengths can Diners numbers have?")
T("Does our regex need special handling for 19-digit UnionPay cards like ⟦card|unionpay19,plain⟧?")
T("Summarise this fraud alert: 'We detected an unusual transaction of €1,240.00 at ELECTRO-MAX BERLIN on your card ⟦card|visa,space⟧. If you did not make this purchase, call the number on the back of your card.'")
T("Old records in our billing DB have 13-digit Visa numbers like ⟦card|visa13,plain⟧. Does the PAN regex `^4[0-9]{12}(?:[0-9]{3})?$` handle them?")
T("Le client a collé ceci dans le chat : « carte ⟦card|mc,plain⟧ exp 04/27 ». Rédige une réponse lui demandant de ne jamais partager son numéro de carte.")
T("""
    JSON from the webhook — why is "brand" null?
    {"id": "pm_1OqK", "card": {"number": "⟦card|discover65,plain⟧", "exp_month": 7, "exp_year": 2026, "brand": null}}
""")
T("My card ⟦card|amex,dash⟧ keeps getting declined on your site but works everywhere else. Order number 4000123456789 if that helps.")
T("Receipt OCR output — extract the merchant and the total: 'COFFEE HOUSE 22 / 14 KING ST / VISA ⟦card|visa,space⟧ / AUTH 044812 / TOTAL 7.40'")
T("Write a chargeback dispute letter for card ⟦card|mc,dash⟧, transaction on 2024-04-02 for $312.18 at 'SKYHI TRAVEL', which I never authorised.")
T("A CSV column 'pan' contains values like ⟦card|jcb,plain⟧ and ⟦card|mc2,plain⟧. Write pandas code that keeps only the last 4 digits.")
T("Resume: 'Se realizó un cargo no reconocido de 89,90 € en la tarjeta ⟦card|visa,space⟧ el 12/05. El titular solicita el bloqueo inmediato.'")
T("Our BIN table has no entry for ⟦card|discover644,space⟧ — is 644 really a Discover range?")
T("""
    Can you spot the bug? The masking function leaks the number:
    >>> mask("⟦card|maestro,space⟧")
    '**** **** **** ****'
    >>> mask("⟦card=5105105105105100⟧")
    '⟦card=5105105105105100⟧'
""")

# ==================================================================================================
# IBAN
# ==================================================================================================

T("Please write a payment reminder in German for invoice RE-2024-118, amount 1.480,00 EUR, payable to IBAN ⟦iban|DE,space⟧, BIC COBADEFFXXX.")
T("Is this IBAN valid? ⟦iban|GB,plain⟧")
T("""
    Convert this supplier list to CSV:
    Acme BV — ⟦iban|NL,space⟧ — VAT NL123456789B01
    Bruxelles Print SPRL — ⟦iban|BE,space⟧
    Studio Arco Srl — ⟦iban|IT,space⟧
""")
T("Redacta un correo para el proveedor confirmando que la transferencia se hará a la cuenta ⟦iban|ES,space⟧ el próximo lunes.")
T("Voici mon RIB, peux-tu vérifier le format ? IBAN : ⟦iban|FR,space⟧ — BIC : BNPAFRPPXXX")
T("""
    Swiss payroll export — why does the bank reject row 3?
    employee,iban,amount
    M. Keller,⟦iban|CH,plain⟧,6450.00
    S. Rossi,⟦iban|CH,plain⟧,5980.50
    A. Meier,⟦!iban_badcheck|CH,plain⟧,7120.00
""")
T("Summarise this email and tell me if it's phishing: 'Dear Sir, due to an audit our banking details have changed. Please send all future payments to ⟦iban|GB,space⟧ (sort code 20-00-00 unchanged).'")
T("Kannst du prüfen, ob die IBAN ⟦iban|AT,space⟧ zu einer österreichischen Bank gehört?")
T("""
    SEPA XML snippet, why does schema validation fail?
    <CdtrAcct><Id><IBAN>⟦iban|IE,plain⟧</IBAN></Id></CdtrAcct>
    <CdtrAgt><FinInstnId><BIC>AIBKIE2D</BIC></FinInstnId></CdtrAgt>
    <InstdAmt Ccy="EUR">250.00</InstdAmt>
""")
T("My Polish client sent ⟦iban|PL,space⟧ — Polish IBANs are 28 characters, right?")
T("Write Python that validates IBANs. Test values: ⟦iban|PT,plain⟧ (should pass) and ⟦!iban_badcheck|PT,plain⟧ (should fail).")
T("Supplier onboarding form, extract the fields as JSON: Company: Nordlys AS; Org nr: 923 456 789; Account: ⟦iban|NO,space⟧; Invoices to: ⟦email=faktura@nordlys.no⟧")
T("Danish IBAN ⟦iban|DK,plain⟧ vs Finnish ⟦iban|FI,plain⟧ — are both really 18 characters?")
T("Translate to English: « Le remboursement sera effectué sur le compte ⟦iban|LU,space⟧ sous 10 jours ouvrés. »")
T("Reconcile: the bank statement shows a credit from ⟦iban|SE,space⟧ for 12 500 SEK, ref 'INV 2291'. Which open invoice does it match?")
T("Greek supplier's account is ⟦iban|GR,space⟧. Is ETHNGRAA the right BIC for it?")
T("The tenant paid rent into the wrong account ⟦iban|DE,plain⟧ instead of ours ⟦iban|DE,plain⟧. Write a letter to the bank requesting a recall of the transfer.")
T("Stripe payout failed: 'The bank account ⟦iban|FR,plain⟧ could not be verified.' What should I ask the seller to check?")
T("¿Esta IBAN es de Santander o de BBVA? ⟦iban|ES,plain⟧")
T("Write a short email to a freelancer confirming we'll pay €2,400 to ⟦iban|PT,space⟧ by the 5th of next month.")
T("Tidy up the formatting of this payment instruction: Beneficiary: Van Dijk Consultancy; IBAN: ⟦iban|NL,plain⟧; Amount: EUR 7.350,00; Reference: PO-88231.")
T("""
    Parse this MT940 fragment and give me the opening balance:
    :20:STMT240301
    :25:⟦iban|DE,plain⟧
    :28C:00001/001
    :60F:C240301EUR1234,56
""")
T("Unsere Buchhaltung braucht die IBAN in Viererblöcken. Bitte formatiere ⟦iban|DE,plain⟧ entsprechend.")
T("Customer wants refunds to a Belgian account: ⟦iban|BE,plain⟧. Our form says 'invalid length' — BE is 16, right?")

# ==================================================================================================
# SSN
# ==================================================================================================

T("Fill this W-4 summary into a table: Employee: Jordan Miles, SSN ⟦ssn|dash⟧, filing status single, one job, no dependents.")
T("""
    Our HR export has SSNs in two formats; write code to normalise them to ddd-dd-dddd:
    ⟦ssn|space⟧
    ⟦ssn|dash⟧
    ⟦ssn|space⟧
""")
T("Can you redact PII in this loan application before I paste it into Jira? Applicant: R. Delgado, DOB 1986-04-22, SSN ⟦ssn|dash⟧, annual income $84,000, employer Harbor Freight Lines.")
T(r"Our validator rejects ⟦ssn|dash⟧ but accepts 000-45-1234. Fix the regex ^\d{3}-\d{2}-\d{4}$ so it follows SSA rules.")
T("Traduce al inglés: 'Adjunto el formulario con mi número de seguro social ⟦ssn|dash⟧ para el trámite de la visa.'")
T("Write a polite email asking the candidate to resend the I-9 form; the SSN they entered (⟦ssn|dash⟧) doesn't match the card they showed.")
T("""
    Found in application logs, is this a compliance problem?
    INFO 2024-04-09 11:20:33 payroll.sync employee_id=E10442 ssn=⟦ssn|dash⟧ status=ok
    INFO 2024-04-09 11:20:34 payroll.sync employee_id=E10443 ssn=⟦ssn|dash⟧ status=ok
""")
T("Tax prep notes: spouse SSN ⟦ssn|space⟧, dependent Maya (SSN ⟦ssn|dash⟧), 2023 AGI $112,450. Which credits might apply?")
T("Write a Python script that reads employees.csv and masks the ssn column (values look like ⟦ssn|dash⟧) to show only the last four digits.")
T("Help me write a credit report dispute letter. My SSN is ⟦ssn|dash⟧ and the account 'Capital Auto #88213' is not mine.")
T("Why does our signup form reject ⟦ssn|space⟧ when the user types spaces instead of dashes?")
T("Draft a letter to the SSA reporting a death. Deceased: Walter Price, SSN ⟦ssn|dash⟧, date of death 2024-02-11.")
T("I think my identity was stolen. Someone opened a store card using SSN ⟦ssn|dash⟧ and my old address, 14 Elm St Apt 3B. What steps should I take first?")
T("""
    JSON from our onboarding API — which fields should be encrypted at rest?
    {"first": "Nia", "last": "Brooks", "ssn": "⟦ssn|dash⟧", "dob": "1991-09-30", "state": "OH"}
""")
T("Benefits enrollment: spouse SSN ⟦ssn|dash⟧, child 1 SSN ⟦ssn|dash⟧, child 2 pending. Summarise what's missing.")
T("Explain what each part of ⟦ssn|dash⟧ means (area, group, serial).")
T("Mi hijo necesita su número de Seguro Social para la escuela; es ⟦ssn|dash⟧. ¿Lo debo poner en el formulario en línea?")
T("Email from payroll: 'Hi Derek, your W-2 shows SSN ⟦ssn|dash⟧ but our records show ⟦ssn|dash⟧. Please confirm which is correct.' Write a reply.")
T("The background check vendor wants SSNs in 'ddd dd dddd' format. Applicant: Carla Jimenez, ⟦ssn|space⟧, DOB 03/04/1990. Fill in their template.")
T("UPDATE patients SET ssn = '⟦ssn|dash⟧' WHERE mrn = 'MRN-004512'; — is there an injection risk if this is built with string concatenation?")
T("Medicare form: beneficiary SSN ⟦ssn|dash⟧, plan ID H1234-001. Summarise which documents are still missing.")
T("Mortgage pre-approval summary: borrower SSN ⟦ssn|dash⟧, co-borrower SSN ⟦ssn|space⟧, requested amount $385,000, term 30 years.")
T("Our Excel sheet turned ⟦ssn|dash⟧ into a date. How do I stop Excel from auto-formatting that column?")
T("Pour mon dossier d'expatriation aux États-Unis, l'employeur demande mon SSN : ⟦ssn|dash⟧. Est-ce qu'il faut aussi l'ITIN de mon conjoint ?")

# ==================================================================================================
# IP
# ==================================================================================================

T("""
    nginx access log — which client is hammering us?
    ⟦ip=203.0.113.45⟧ - - [02/May/2024:10:15:32 +0000] "GET /api/v1/orders HTTP/1.1" 200 512
    ⟦ip=203.0.113.45⟧ - - [02/May/2024:10:15:32 +0000] "GET /api/v1/orders HTTP/1.1" 200 512
    ⟦ip=198.51.100.7⟧ - - [02/May/2024:10:15:33 +0000] "POST /api/v1/login HTTP/1.1" 401 64
""")
T("Our docker-compose has `ports: - \"⟦ip=127.0.0.1⟧:5432:5432\"`. Why can't my colleague connect to Postgres from ⟦ip=192.168.1.57⟧?")
T("ssh: connect to host ⟦ip=10.20.4.17⟧ port 22: Connection timed out. The bastion is ⟦ip=34.201.88.12⟧. Help me write an ~/.ssh/config with ProxyJump.")
T("ping6 ⟦ip=2001:db8::8a2e:370:7334⟧ works but curl http://[⟦ip=2001:db8::8a2e:370:7334⟧]:8080/health times out — why?")
T("What's the difference between ⟦ip=fe80::1ff:fe23:4567:890a⟧ and ⟦ip=2001:0db8:85a3:0000:0000:8a2e:0370:7334⟧ on the same interface?")
T("Firewall rule review: allow tcp from ⟦ip=172.16.8.21⟧ to ⟦ip=172.16.9.5⟧ port 443; deny all from ⟦ip=172.16.8.99⟧. Is the order right for iptables?")
T("FATAL: no pg_hba.conf entry for host \"⟦ip=10.0.3.118⟧\", user \"app\", database \"orders\", SSL off — what line do I add?")
T("El servidor ⟦ip=192.168.0.254⟧ no responde al ping desde la VLAN 20. ¿Qué debería revisar primero?")
T("redis.conf has `bind ⟦ip=127.0.0.1⟧ ⟦ip=::1⟧`. Is it safe to change it to `bind ⟦ip=0.0.0.0⟧` if protected-mode is on?")
T("Kubernetes: my pod IP is ⟦ip=10.244.1.23⟧ and kube-dns has ClusterIP ⟦ip=10.96.0.10⟧, but DNS lookups time out from inside the pod.")
T("Der Router hat die Adresse ⟦ip=192.168.178.1⟧, mein NAS ⟦ip=192.168.178.20⟧. Warum erreiche ich das NAS nicht über IPv6 ⟦ip=fd00::9e1:4bff:fe2a:11c0⟧?")
T("Cloudflare DNS is ⟦ip=1.1.1.1⟧ and ⟦ip=2606:4700:4700::1111⟧ — how do I set them with netplan on Ubuntu 22.04?")
T("""
    Traceroute output, where's the latency coming from?
     1  ⟦ip=192.168.1.1⟧  1.203 ms
     2  ⟦ip=100.64.0.1⟧  8.551 ms
     3  ⟦ip=62.115.44.9⟧  14.902 ms
     4  * * *
     5  ⟦ip=142.250.180.14⟧  23.110 ms
""")
T("X-Forwarded-For: ⟦ip=203.0.113.195⟧, ⟦ip=70.41.3.18⟧, ⟦ip=150.172.238.178⟧ — which one is the real client if we sit behind two proxies?")
T("""
    EC2 describe-instances output (trimmed), which one is publicly reachable?
    "PrivateIpAddress": "⟦ip=10.0.1.25⟧",
    "PublicIpAddress": "⟦ip=54.173.20.91⟧",
    "Ipv6Address": "⟦ip=2600:1f18:4a3:6b00:9c2f:1e4d:77a0:12b8⟧"
""")
T("/etc/hosts has `⟦ip=127.0.1.1⟧ myhost` and `⟦ip=::1⟧ localhost ip6-localhost`. Why does sudo hang for 10 seconds resolving the hostname?")
T("My ISP gave me ⟦ip=2a02:8108:1140:2f00:c4e5:2b1a:9d3f:6e07⟧. Is that an EUI-64 address or a privacy address?")
T("Mon serveur ⟦ip=51.15.204.88⟧ reçoit des requêtes bizarres sur le port 23 depuis hier. Dois-je m'inquiéter ?")
T("Windows Event 4625, failed logon from source network address ⟦ip=185.220.101.34⟧, 400 times in an hour. Is this RDP brute force?")
T("The gRPC client logs 'connection refused' to [⟦ip=2001:db8:1::25⟧]:50051 but works with ⟦ip=192.0.2.25⟧:50051. Does tonic need anything special for IPv6?")
T("Our ALB access log line: `h2 2024-05-09T12:01:44Z app/prod-alb ⟦ip=81.2.69.142⟧:53412 ⟦ip=10.0.12.7⟧:8080 0.001 0.013 0.000 200 200` — what does each field mean?")

# ==================================================================================================
# SECRET
# ==================================================================================================

T("""
    .env file — why isn't python-dotenv picking it up?
    OPENAI_API_KEY=⟦secret|openai⟧
    DATABASE_URL=postgres://localhost:5432/app
    DEBUG=true
""")
T("""
    My Anthropic client throws 401:
    ```python
    client = anthropic.Anthropic(api_key="⟦secret|anthropic⟧")
    ```
    Is the key format right?
""")
T("""
    Terraform plan fails with 'InvalidClientTokenId'. Provider block:
    provider "aws" {
      region     = "eu-west-1"
      access_key = "⟦secret|aws⟧"
      secret_key = var.aws_secret
    }
""")
T("""
    GitHub Actions step keeps failing with 'Bad credentials':
    - name: Create release
      env:
        GH_TOKEN: ⟦secret|github⟧
      run: gh release create v1.4.0 --generate-notes
""")
T("Slack bot isn't posting. Code: `const app = new App({ token: '⟦secret|slack⟧', signingSecret: process.env.SLACK_SIGNING_SECRET });` What scopes do I need for chat:write?")
T("Google Maps JS API error 'RefererNotAllowedMapError'. Script tag: <script src=\"https://maps.googleapis.com/maps/api/js?key=⟦secret|google⟧&callback=initMap\"></script>")
T("Decode this JWT and tell me when it expires: ⟦secret|jwt⟧")
T("""
    Why does `ssh -i deploy_key` say 'invalid format'? Contents of deploy_key:
    ⟦secret|pem_openssh⟧
""")
T("""
    Kubernetes Secret manifest — is the indentation right?
    apiVersion: v1
    kind: Secret
    metadata:
      name: ingress-tls
    stringData:
      tls.key: |
        ⟦secret|pem_rsa,indent4⟧
""")
T("curl -H \"Authorization: Bearer ⟦secret|openai_proj⟧\" https://api.openai.com/v1/models returns 429 — am I rate limited or out of credit?")
T("""
    Review this config.yaml for security issues:
    server:
      port: 8080
    llm:
      provider: anthropic
      api_key: ⟦secret|anthropic⟧
      model: claude-3-5-sonnet-20241022
    logging:
      level: debug
""")
T("""
    AWS CLI says ExpiredToken. ~/.aws/credentials:
    [default]
    aws_access_key_id = ⟦secret|aws_asia⟧
    aws_secret_access_key = <redacted>
    aws_session_token = <redacted>
""")
T("""
    Here's the failing request from our gateway logs:
    POST /v1/chat/completions 401
    headers: {"authorization": "Bearer ⟦secret|openai⟧", "content-type": "application/json"}
""")
T("""
    openssl says 'unable to load Private Key'. File:
    ⟦secret|pem_ec⟧
    I generated it with `openssl ecparam -genkey -name prime256v1`.
""")
T("¿Por qué mi script da error 403? Uso este token de GitHub: ⟦secret|github⟧ con permisos repo y workflow.")
T("The frontend sends this cookie: session=⟦secret|jwt⟧; Path=/; HttpOnly. Is storing the role in the payload a bad idea?")
T("""
    Refactor this to read keys from the environment:
    import os, openai, boto3
    openai.api_key = "⟦secret|openai⟧"
    s3 = boto3.client("s3", aws_access_key_id="⟦secret|aws⟧", aws_secret_access_key=os.environ["AWS_SECRET"])
""")
T("""
    Firebase config from our web app — is it OK that apiKey is shipped to the browser?
    const firebaseConfig = {
      apiKey: "⟦secret|google⟧",
      authDomain: "tinyforest-prod.firebaseapp.com",
      projectId: "tinyforest-prod"
    };
""")
T("""
    Service account JSON from GCP (trimmed), how do I load it in Go?
    {"type": "service_account", "project_id": "acme-data", "private_key_id": "⟦!hex|40⟧", "private_key": "⟦secret|pem_pkcs8,escaped⟧\\n", "client_email": "etl-runner@acme-data.iam.gserviceaccount.com"}
""".replace("etl-runner@acme-data.iam.gserviceaccount.com", "⟦email=etl-runner@acme-data.iam.gserviceaccount.com⟧"))
T("Mein Deploy-Skript loggt versehentlich den Slack-Token: 'posting with token ⟦secret|slack⟧ to #releases'. Wie maskiere ich das im Log?")
T("docker run -e ANTHROPIC_API_KEY=⟦secret|anthropic⟧ -p 8080:8080 semroute:latest exits with code 1 and logs 'upstream auth failed'. Any ideas?")
T("A JWT from our IdP fails signature verification in jose: ⟦secret|jwt,rs256⟧. The JWKS has kid 'k1'. What should I check?")
T("""
    Why does npm install from GitHub Packages return 401? ~/.npmrc:
    @acme:registry=https://npm.pkg.github.com
    //npm.pkg.github.com/:_authToken=⟦secret|github⟧
""")
T("""
    Is this key encrypted or not?
    ⟦secret|pem_pkcs8enc⟧
""")
T("""
    GitLab CI variables dump (the masked ones didn't mask!):
    AWS_ACCESS_KEY_ID=⟦secret|aws⟧
    AWS_DEFAULT_REGION=us-east-1
    GOOGLE_API_KEY=⟦secret|google⟧
    SENTRY_DSN=<masked>
""")
T("""
    Our Helm values.yaml:
    openai:
      apiKey: "⟦secret|openai_proj⟧"
    replicaCount: 3
    image:
      tag: 1.8.2
    Why does the pod log 'invalid_api_key'?
""")
T("Mon appel à l'API Claude renvoie 'invalid x-api-key'. En-tête envoyé : x-api-key: ⟦secret|anthropic⟧ — le format est-il correct ?")
T("""
    The cryptography library raises 'Could not deserialize key data' on this:
    PRIVATE_KEY = '''⟦secret|pem_rsa⟧'''
    key = serialization.load_pem_private_key(PRIVATE_KEY.encode(), password=None)
""")
T("Postman collection export has an Authorization header 'Bearer ⟦secret|jwt⟧'. Before sharing the collection, what else should I scrub?")

# ==================================================================================================
# MIXED — several kinds in one prompt
# ==================================================================================================

T("""
    Redact all PII in this customer record before I share it with the vendor:
    Name: Elena Petrova
    Email: ⟦email=elena.petrova@lumosmail.com⟧
    Phone: ⟦phone=+44 20 7946 0773⟧
    Card: ⟦card|visa,space⟧
    Last login IP: ⟦ip=81.2.69.160⟧
""")
T("""
    Incident write-up, please make it more concise:

    At 02:14 UTC the on-call engineer (⟦email=sam.ortega@quantaflow.io⟧) noticed that the staging box ⟦ip=10.12.0.44⟧ was exposing /debug/vars publicly. The page contained the environment, including OPENAI_API_KEY=⟦secret|openai⟧. We rotated the key at 02:31 and blocked ⟦ip=45.155.205.233⟧, which had scraped the page 14 times.
""")
T("""
    New hire paperwork — pull out the fields into JSON:
    Name: Ingrid Larsen
    SSN: ⟦ssn|dash⟧
    Salary account (Norwegian): ⟦iban|NO,plain⟧
    Mobile: ⟦phone=+47 412 34 567⟧
    Work email: ⟦email=ingrid.larsen@fjordline-tech.com⟧
""")
T("""
    Summarise this complaint for the team lead:

    "Hello, I'm writing again because nobody answers at ⟦phone=(312) 555-0139⟧. On 2 April you charged my card ⟦card|mc,space⟧ twice for the same order (ORD-2024-00981, $214.50). I emailed ⟦email=billing@homestead-goods.com⟧ on 4 April and got no reply. I want the duplicate refunded.
    — Patricia Owens"
""")
T("""
    Paste from our payment service logs, is anything here a PCI problem?
    2024-03-21T10:02:11.412Z INFO  charge.create customer=cus_88213 ip=⟦ip=203.0.113.88⟧ amount=4999 currency=usd
    2024-03-21T10:02:11.530Z DEBUG charge.request body={"number":"⟦card|visa,plain⟧","exp":"08/27","cvc":"***"}
    2024-03-21T10:02:12.001Z INFO  charge.succeeded id=ch_3Ox request_id=⟦!uuid⟧
""")
T("""
    Bitte übersetze ins Englische:
    "Sehr geehrter Herr Vogel, bitte überweisen Sie den offenen Betrag von 2.150,00 EUR bis zum 30.04.2024 auf unser Konto ⟦iban|DE,space⟧. Bei Fragen erreichen Sie uns unter ⟦phone=+49 40 3861 7720⟧ oder ⟦email=buchhaltung@nordhafen-logistik.de⟧."
""")
T("""
    docker-compose.yml for a teammate — anything I should remove before committing?
    services:
      api:
        image: acme/api:2.4.1
        environment:
          ANTHROPIC_API_KEY: ⟦secret|anthropic⟧
          REDIS_HOST: ⟦ip=172.18.0.3⟧
          ADMIN_EMAIL: ⟦email=ops@acme-robotics.dev⟧
        ports:
          - "8080:8080"
""")
T("Resumen del caso: la clienta (⟦email=lucia.fernandez@telefonica.net⟧, ⟦phone=+34 612 34 56 78⟧) pagó con la tarjeta ⟦card|mc2,dash⟧ y pide el reembolso a su cuenta ⟦iban|ES,space⟧.")
T("""
    Write a summary of this Zendesk ticket for the refunds team:
    Requester: ⟦email=t.nguyen@brightpath.edu⟧
    Phone: ⟦phone=+1 (415) 555-0117⟧
    Message: "I was billed on the card ending 8841 after cancelling. My card number is ⟦card|amex,space⟧ if you need it. Please refund to the same card."
""")
T("""
    Security review: this Python snippet was committed to a public repo. List everything we need to rotate.

    DB_HOST = "⟦ip=10.0.4.15⟧"
    SLACK_TOKEN = "⟦secret|slack⟧"
    GITHUB_TOKEN = "⟦secret|github⟧"
    ALERT_EMAIL = "⟦email=alerts@kovacs-foods.hu⟧"
""")
T("""
    Tax form data for an expat employee, check it's complete:
    US SSN: ⟦ssn|dash⟧
    Home bank (Ireland): ⟦iban|IE,space⟧
    Phone: ⟦phone=+353 1 555 0142⟧
""")
T("""
    Please anonymise this paragraph for a training dataset:

    "Kevin called from ⟦phone=+44 7700 900312⟧ asking why his direct debit from ⟦iban|GB,space⟧ failed. I checked the logs: the request came from ⟦ip=2a00:23c7:8e0a:1f01::4c⟧ and he had logged in as ⟦email=kev.harris@btinternet.com⟧."
""")
T("""
    auth.log excerpt — what happened here?
    May  3 04:12:09 web01 sshd[2211]: Failed password for root from ⟦ip=218.92.0.112⟧ port 51122 ssh2
    May  3 04:12:15 web01 sshd[2214]: Accepted publickey for deploy from ⟦ip=10.0.0.8⟧ port 40022 ssh2
    May  3 04:13:02 web01 sudo: deploy : TTY=pts/0 ; PWD=/srv ; USER=root ; COMMAND=/usr/bin/cat /srv/.env
    May  3 04:13:02 web01 app[881]: loaded env ANTHROPIC_API_KEY=⟦secret|anthropic⟧
""")
T("Rédige un email de relance : le client ⟦email=j.moreau@atelier-moreau.fr⟧ (⟦phone=+33 4 78 92 15 60⟧) n'a pas réglé la facture F-2024-031 ; le virement doit être fait sur ⟦iban|FR,space⟧.")
T("""
    Here's the HAR entry that leaks data, which fields are sensitive?
    "request": {"url": "https://api.example.net/v2/profile", "headers": [{"name": "Authorization", "value": "Bearer ⟦secret|jwt⟧"}, {"name": "X-Real-IP", "value": "⟦ip=198.51.100.61⟧"}]},
    "response": {"content": {"text": "{\\"email\\": \\"⟦email=m.ali@example.net⟧\\", \\"phone\\": \\"⟦phone=+971 50 123 4567⟧\\"}"}}
""")
T("""
    Patient intake form (OCR), fix the OCR errors but keep values:
    Patient: James O'Neil   DOB: 07/12/1979
    SSN: ⟦ssn|dash⟧     Phone: ⟦phone=(503) 555-0121⟧
    Insurance ID: XKP-448812-01   Email: ⟦email=jimoneil79@yahoo.com⟧
""")
T("""
    I'm building a PII scrubber. Here are my test inputs; tell me which ones my regexes will miss:
    1. ⟦email=first.last@company.co.uk⟧
    2. ⟦phone=+1 415 555 0187⟧
    3. ⟦card|discover,dash⟧
    4. ⟦ssn|dash⟧
    5. ⟦iban|IT,space⟧
    6. ⟦ip=172.31.255.254⟧
    7. ⟦secret|aws⟧
""")
T("""
    Vendor sent this by email, can you turn it into our supplier template?

    Company: Hoffmann Feinmechanik GmbH
    Contact: Jens Hoffmann, ⟦email=j.hoffmann@hoffmann-fm.de⟧, ⟦phone=+49 7031 45 99 12⟧
    Bank: ⟦iban|DE,space⟧ (BIC SOLADEST600)
    VAT: DE 812 345 678
    Payment terms: 30 days net
""")
T("""
    Our chatbot transcript export, please count the messages per speaker:
    [user] hi, my order 5521-88 never arrived
    [bot] Sorry to hear that! Could you share the email on your account?
    [user] ⟦email=paulo.santos@gmail.com⟧
    [bot] Thanks. And a phone number we can reach you on?
    [user] ⟦phone=+55 11 98765 4321⟧
    [bot] Got it, a courier update will be sent within 24 hours.
""")
T("""
    Rewrite this as a clean bug report:
    when i POST to /v1/complete from ⟦ip=192.168.10.23⟧ with x-api-key ⟦secret|anthropic⟧ i get a 502, but from ⟦ip=192.168.10.24⟧ it works?? both behind the same NAT. request id ⟦!uuid⟧
""")
T("""
    Der Kunde hat Folgendes in den Chat kopiert, bitte schreib eine Antwort, die ihn auf den Datenschutz hinweist:
    "Meine Karte ist ⟦card|visa,space⟧, meine IBAN ⟦iban|AT,space⟧, und Sie erreichen mich unter ⟦phone=+43 1 58 58 123⟧."
""")
T("""
    Server bootstrap script — what's wrong with this?
    #!/bin/bash
    export AWS_ACCESS_KEY_ID=⟦secret|aws⟧
    export GOOGLE_MAPS_KEY=⟦secret|google⟧
    echo "nameserver ⟦ip=8.8.8.8⟧" > /etc/resolv.conf
    curl -fsSL https://get.docker.com | sh
""")
T("""
    Fraud team notes, make a timeline:
    - 09:12 login from ⟦ip=5.188.62.140⟧ (new device) for ⟦email=carol.whitman@fastmail.com⟧
    - 09:14 phone number on the account changed to ⟦phone=+1 206 555 0166⟧
    - 09:15 new card added ⟦card|visa,dash⟧
    - 09:17 three gift-card purchases, $500 each
""")
T("""
    Write unit tests for our redaction function. Inputs and expected outputs:
    "mail me at ⟦email=ops@lakeside.io⟧" -> "mail me at [EMAIL]"
    "SSN ⟦ssn|dash⟧" -> "SSN [SSN]"
    "key ⟦secret|github⟧" -> "key [SECRET]"
    "ip ⟦ip=2001:db8:85a3::8a2e:370:7334⟧" -> "ip [IP]"
""")

# ==================================================================================================
# HARD NEGATIVES / NEAR-MISSES — nothing sensitive under the policy
# ==================================================================================================

# --- order, tracking, invoice and reference numbers ---------------------------------------------
T("Where is my order #4000123456789? It was supposed to arrive Tuesday and the tracking page hasn't updated since Friday.")
T("UPS tracking 1Z999AA10123456784 shows 'Exception: address correction needed'. What does that mean and do I need to do anything?")
T("Invoice INV-2024-00417 dated 15/03/2024 for €1,249.99 is still unpaid. Draft a firm but friendly reminder.")
T("Tracking numbers: FedEx 7489 2736 5412, USPS 9400 1000 0000 0000 0000 00, DHL 1234567890. Which carrier is usually slowest to Alaska?")
T("Order numbers 2024-118-0932 and 2024-118-0933 were merged by mistake. Write the SQL to split them back using the line_items table.")
T("Our gift card ⟦!badluhn|discover,space⟧ won't redeem at checkout — the site says 'invalid number'. Is the card broken?")
T("Loyalty number ⟦!badiin|9,16,space⟧ isn't being recognised at the till. How do I add it to my account manually?")
T("Serial number SN-⟦!badluhn|visa,dash⟧ is on the warranty sticker. Is the device still under warranty if it was bought in 2021?")
T("Customer ID ⟦!badiin|1,16,plain⟧ — is that too long to store in a Postgres INTEGER column or do we need BIGINT?")
T("The payment reference ⟦!badluhn|mc,plain⟧ on the bank statement doesn't match any invoice. How do I trace it?")
T("El pedido nº 20240318-77 llegó el 18/03/2024 a las 14:05 con la caja rota. Importe: 1.249,99 €. ¿Cómo presento la reclamación?")
T("Rechnung Nr. 2024-0815-4711 vom 01.02.2024, Betrag 3.480,00 EUR, Kundennummer 100 482 193. Bitte formuliere eine Zahlungserinnerung.")
T("Facture n° FA-2024-03-0091, SIRET ⟦!siret⟧, TVA FR40 812345678. Peux-tu vérifier que toutes les mentions obligatoires sont présentes ?")
T("Booking reference X7K9PQ, flight LH 2041 departs 06:45 from gate B12, seat 23A. Can I still change to the 09:10 flight?")
T("Case number 2024-CV-01187 was transferred to docket 22-1043. Summarise what a transfer like that usually means.")
T("PO 4500018234 line 10 has quantity 1,200 at 3.75 each but the GR shows 1,150. How do we book the difference in SAP?")
T("Reference numbers ⟦!badluhn|visa,plain⟧ and ⟦!badluhn|amex,plain⟧ came back as 'unknown' from the bank's API. Are they card numbers or something else?")
T("Our POS printed transaction ID ⟦!badiin|8,19,plain⟧ on the receipt. Is that enough to find the payment in Adyen?")

# --- barcodes, ISBNs, device identifiers ------------------------------------------------------
T("ISBN 978-0-306-40615-7 vs ISBN-10 0-306-40615-2: write code to convert between the two formats and validate the check digit.")
T("The EAN-13 barcode 4006381333931 scans as a different product in our warehouse app. How is the EAN check digit computed?")
T("My phone's IMEI is ⟦!imei|dash⟧ — how do I check whether it's blacklisted before buying it second-hand?")
T("Inventory sheet: IMEI ⟦!imei|plain⟧ and ⟦!imei|plain⟧ are listed twice. Write a formula that highlights duplicates in Google Sheets.")
T("Book list for the reading group: ISBN 9780141439518, ISBN 9780307277671 and ISBN 9780571334650. Suggest an order to read them in.")
T("GTIN-14 10614141000415 vs UPC 614141000418 — how do I convert one to the other?")
T("Asset tag ASSET-000412 has MAC 3c:22:fb:9a:10:e4 and serial C02XK0JHJG5H. Add it to the inventory table.")

# --- dates, times, timestamps, versions -------------------------------------------------------
T("Convert 2024-03-15 12:30:45 UTC to Pacific time and to a Unix timestamp. Is it 1710505845?")
T("Upgrading from 1.2.3 to v10.4.1 broke our build, and the changelog mentions 2.0.0-rc.1. Which release notes should I read first?")
T("Schedule: 2024-03-15, 15/03/2024, 03/15/2024 and 15.03.2024 — which of these formats does dateutil parse unambiguously?")
T("Meeting times to convert to CET: 12:30:45, 23:59:59 and 00:00:01 UTC. Also, is 24:00:00 a valid ISO 8601 time?")
T("Windows build 10.0.19045.3803 vs 10.0.22631.3296 — which one is Windows 11 23H2?")
T("Chrome 124.0.6367.91 crashes on startup after the update from 123.0.6312.122. How do I roll back?")
T("Our logs use epoch milliseconds like 1715000000000 and 1715003600000. Write a jq filter that converts them to ISO dates.")
T("Compare semver ranges ^1.2.3, ~1.2.3 and >=1.2.3 <2.0.0 — which versions does each allow?")
T("Der Bericht vom 03.04.2024 um 14:05:33 Uhr zeigt Version 5.12.3. Seit Version 5.10 ist das Feature verfügbar. Bitte fasse das zusammen.")
T("Report dates 03-15-2024, 12-31-2023 and 01-02-2024 are in US format. Convert them to ISO 8601.")
T("Model ids gpt-4o-2024-08-06 and claude-3-5-sonnet-20241022 — which one should our router default to for code questions?")

# --- IPv4/IPv6 look-alikes --------------------------------------------------------------------
T("SNMP walk of OID 1.3.6.1.2.1.1.3.0 returns sysUpTime. What does OID 1.3.6.1.4.1.9.9.13 refer to?")
T("Is 256.100.50.25 a valid IPv4 address? And 192.168.1.300? Write a validator that rejects both.")
T("DHCP reservation for MAC 3C-22-FB-9A-10-E4 isn't working; in the router UI it shows as 3c:22:fb:9a:10:e4. Does the format matter?")
T("Is 2001:db8:::1 a valid IPv6 address? What about fe80::1::2? My parser accepts both and I think that's wrong.")
T("In Rust, why does tokio::sync::Mutex need .await but std::sync::Mutex doesn't?")
T("The server listens on localhost:8080 and the admin UI on localhost:9090. How do I proxy both behind Caddy with one domain?")
T("The product is rated IP67 and the charger IP44. What's the practical difference for outdoor use?")
T("Section 3.2.1 of the spec conflicts with section 12.4.7. Summarise the difference.")
T("Docker maps 8080:80 and 5432:5432 but the app still can't reach the DB at db:5432. What's wrong with the network?")
T("AWS account 123456789012 has role arn:aws:iam::123456789012:role/deploy. Why does AssumeRole fail with AccessDenied?")
T("GPS coordinates 37.7749, -122.4194 and 40.7128, -74.0060 — what's the distance in km?")
T("¿Qué diferencia hay entre la versión 4.2.1 y la 4.10.0 de la librería? ¿Por qué 4.10 es más nueva si 10 < 2 lexicográficamente?")

# --- emails that are not addresses -----------------------------------------------------------
T("Contact me at john at example dot com or jane[at]corp[dot]com. Write a regex that de-obfuscates these into real addresses.")
T("Flask uses @app.route('/users/<int:id>') while FastAPI uses @router.get('/users/{id}'). Which one is easier to test?")
T("npm install @types/node@20.11.5 @vitejs/plugin-react@4.2.1 fails with ERESOLVE. How do I fix the peer dependency conflict?")
T("Thank @maria_dev and @k8s_guru in the release notes for v3.2 and mention the #platform channel.")
T("Why does `docker pull nginx@sha256:⟦!sha256⟧` fail with 'manifest unknown'?")
T("Our masking shows emails as j***@gmail.com and m****@outlook.com. Is that enough under GDPR or should we hash them?")
T("Should the email field placeholder say 'name@company' or 'you@yourdomain'? Write microcopy for the signup form.")
T("Escribe una regla para detectar correos ofuscados como 'pedro arroba empresa punto com' o 'pedro (at) empresa (dot) es'.")
T("The git remote is `origin  ssh://gitea.internal:2222/platform/infra.git`. How do I switch it to HTTPS?")

# --- phone look-alikes -----------------------------------------------------------------------
T("Call extension 4412 for IT, or dial 9 for an outside line. Room 402-12 is on the fourth floor next to the kitchen.")
T("Shipping rates to ZIP 94107-1234 vs 10001 — why is the ZIP+4 one cheaper on the USPS calculator?")
T("Zoom meeting ID 815 2043 9917, passcode 442817. Write a calendar invite for Thursday at 15:00.")
T("La ville compte 1 234 567 habitants et devrait atteindre 2 345 678 en 2040. Calcule le taux de croissance annuel.")
T("Part number 88-1042-77 and drawing DWG-2231-A rev 04 are mismatched on the BOM. Which one should we trust?")
T("Revenue was 1,234,567,890.12 USD in FY2023 and 1.318.004.552,40 EUR in the German filing. Why would the figures differ?")
T("Lottery numbers 4 11 23 35 42 47 came up twice this year. What's the probability of that?")
T("The account balance shows 12 450 000 and the limit 15 000 000. What percentage is used?")
T("Math check: (415 + 555) × 2671 − 2024 = ? Show the working.")
T("Wie viele Sekunden hat ein Jahr mit 365 Tagen? Ist 31 536 000 richtig?")
T("Patent US 10,123,456 B2 and EP 3 456 789 A1 seem to cover the same idea. Summarise their claims.")
T("The phone number field should accept things like '+<country code> <number>'. Write the placeholder and helper text, no real numbers.")

# --- SSN look-alikes -------------------------------------------------------------------------
T("Our validator accepted 000-12-3456 and 666-45-7890 — those should be rejected, right? Also 912-34-5678 looks like an ITIN.")
T("The IRS sent an ITIN letter with number ⟦!ssn_bad|area9xx,dash⟧. Can I use it on a W-9 instead of an SSN?")
T("Test fixtures for our SSN validator (all must be rejected): ⟦!ssn_bad|group00,dash⟧, ⟦!ssn_bad|serial0000,dash⟧, ⟦!ssn_bad|area000,space⟧, ⟦!ssn_bad|area666,dash⟧.")
T("Our EIN is 12-3456789 and the state tax ID 0123456-7. Which one goes on the 1099-NEC?")
T("The form shows the SSN masked as ***-**-6789. Can support see the full number?")
T("Part numbers on the invoice: 4452-12-889, 1203-44-55 and 77-1043-2. Standardise them to our NNNN-NN-NNN format.")
T("Employee IDs are E104-427-781 style. Is that likely to be confused with SSNs by DLP tools?")
T("Le numéro ⟦!ssn_bad|area9xx,dash⟧ figure sur le courrier de l'IRS. Est-ce un SSN ou un ITIN ?")

# --- card look-alikes ------------------------------------------------------------------------
T("The card ending in 4242 was charged twice yesterday. What should I tell the customer about refund timing?")
T("Masked PAN **** **** **** 4417 appears in the receipt email. Is showing the last four digits PCI-compliant?")
T("Customer typed card number 4111 1111 1111 (only 12 digits) and the form accepted it. Fix the length check.")
T("Validate with Luhn: ⟦!badluhn|visa,space⟧ and ⟦!badluhn|mc2,dash⟧. I expect both to fail — am I right?")
T("Someone in the forum posted ⟦!badiin|7,16,dash⟧ as a 'free card number'. Is that even a real card format?")
T("Our fraud rules block BIN 411111 and 552190. Write a rule that also blocks all prepaid BINs from a list.")
T("Test the Luhn function with these digit strings: ⟦!badiin|9,19,plain⟧, ⟦!badiin|1,15,plain⟧, ⟦!badluhn|jcb,plain⟧.")
T("The bank's 'virtual account number' is ⟦!badiin|8,16,space⟧. Is that a card number I can use online?")
T("Explain how card BIN ranges work for Visa (4), Mastercard (51-55, 2221-2720) and Amex (34, 37), without using real card numbers.")

# --- IBAN look-alikes ------------------------------------------------------------------------
T("The bank bounced the payment to ⟦!iban_badcheck|DE,space⟧ with 'invalid account'. What could be wrong with it?")
T("A German IBAN has the structure DEkk bbbb bbbb cccc cccc cc. Explain what each part means.")
T("Our template shows DE00 1234 5678 9012 3456 78 as the example IBAN. Is '00' ever a valid check digit?")
T("Sort code 20-00-00, account number 55779911 — how do I turn a UK sort code and account into an IBAN?")
T("BIC DEUTDEFF500, SWIFT CHASUS33 and BNPAFRPPXXX — what do the last three characters mean?")
T("Customer typed ⟦!iban_badlen|GB,space⟧ and our validator said the checksum is fine but the bank rejected it. Why?")
T("VAT IDs DE812345678, FR40812345678 and NL123456789B01 — write a regex per country.")
T("La IBAN ⟦!iban_badcheck|ES,plain⟧ da error de dígito de control. ¿Puedes explicar cómo se calcula?")
T("Compte bancaire affiché masqué : FR76 **** **** **** **** ***9 043. Est-ce suffisant pour le RGPD ?")
T("Supplier sent ⟦!iban_badlen|NL,plain⟧ but the payment portal says 'wrong length for NL'. How long should it be?")
T("BLZ 370 400 44, Kontonummer 0532013000 — wie bilde ich daraus eine IBAN? Bitte nur die Rechenschritte erklären.")

# --- secret look-alikes ----------------------------------------------------------------------
T("I keep typing `pip install sk-learn` instead of scikit-learn. Which one is correct, and what's the import name?")
T("The Jira label 'task-sk-2' got renamed to 'risk-sk-12'. Update the JQL query: labels in (task-sk-2, desk-sk-9).")
T("In the README, replace sk-... with YOUR_API_KEY and tell people to run export OPENAI_API_KEY=\"<your key here>\".")
T("The dashboard shows my key as sk-proj-...9fQk. Is that the full key, and can I recover the rest?")
T("Our docs say AWS access key ids look like AKIA followed by 16 characters, e.g. AKIAXXXXXXXXXXXXXXXX. Is ASIA used for temporary credentials?")
T("GitHub classic tokens start with ghp_ and fine-grained ones with github_pat_. How can I tell which kind I have without printing it?")
T("The token starts with eyJhbGciOiJSUzI1NiIsImtpZCI6 and is cut off in the logs. How do I log only the JWT header safely?")
T("""
    Is this the right format for the JWKS public key?
    ⟦!pem_public⟧
""")
T("""
    Which CA issued this certificate? I can't tell from the PEM.
    ⟦!pem_cert⟧
""")
T("Add this to authorized_keys for the deploy user: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGp3c2xkZmhza2pkaGZrc2pkaGZrc2Rqa2Zoc2Rr deploy-ci. Is ed25519 better than RSA?")
T("Set SLACK_BOT_TOKEN=xoxb-your-bot-token-here in .env and restart the bot. Write that as a setup step for the docs.")
T("Google API keys start with AIza; ours is stored in Secret Manager under projects/acme/secrets/maps-key. How do I read it from Cloud Run?")
T("My file starts with -----BEGIN PRIVATE KEY----- but the library wants -----BEGIN RSA PRIVATE KEY-----. What's the difference between PKCS#1 and PKCS#8?")
T("Authorization: Bearer $TOKEN works in bash but Authorization: Bearer {{access_token}} fails in Postman. Why?")
T("JWT structure is header.payload.signature, e.g. xxxxx.yyyyy.zzzzz. Explain what each part contains.")
T("Anthropic keys begin with sk-ant- and OpenAI keys with sk-. Write a config loader that picks the provider from the prefix.")
T("OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx is what our .env.example contains. Is that safe to commit?")
T("Our CSS has classes .task-sk-item and .risk-sk-badge; the Slack channel is #risk-sk-team. Rename them to BEM style.")
T("The key fingerprint is SHA256:⟦!b64|43⟧. How do I compare it with the one GitHub shows?")
T("Base64 of our config blob is ⟦!b64|88⟧ — decode it and tell me if it's gzip.")
T("Wie erzeuge ich einen neuen API-Schlüssel, ohne den alten (beginnt mit sk-ant-api03-...) sofort ungültig zu machen?")

# --- hashes, ids, misc -----------------------------------------------------------------------
T("Request ⟦!uuid⟧ failed with a 504; the trace id is ⟦!hex|32⟧. How do I find it in Datadog?")
T("git bisect says the first bad commit is ⟦!sha1⟧. How do I revert only that commit on main?")
T("sha256sum mismatch for the release tarball v3.11.2: expected ⟦!sha256⟧, got ⟦!sha256⟧. Is the download corrupted?")
T("Our pricing: Starter $19/mo, Team $49/mo, Enterprise from $1,200/mo, 17% off annually. Write a pricing table in markdown.")
T("SKU TSH-BLK-XL-0042 and SKU 8801-2231-0097 are duplicates in Shopify. How do I merge them without losing inventory history?")
T("Our Postgres sequence is at 4000000000000000 and the column is BIGINT. How long until we run out at 1000 inserts per second?")
T("Explain the difference between TCP and UDP with one real-world example each.")
T("Write a haiku about database migrations.")
T("¿Cuál es la diferencia entre una tarjeta de débito y una de crédito? Explícalo con un ejemplo sencillo.")
T("Erkläre den Unterschied zwischen IBAN und BIC in zwei Sätzen.")
T("How should a support agent verify a caller's identity without asking for their full card number or SSN?")


# ==================================================================================================
# Build and validate
# ==================================================================================================

# Intentional near-misses that a scanner for the listed secret formats would match but that the
# policy excludes (placeholders / masks). The validator allows exactly these.
ALLOWED_SECRET_LOOKALIKES = {
    "AKIAXXXXXXXXXXXXXXXX",
    "sk-" + "x" * 48,
}

IPV4_SCAN = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)")
IPV6_SCAN = re.compile(r"(?<![0-9A-Za-z_:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Za-z_:])")
SSN_SCAN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
DIGIT_RUN = re.compile(r"\d+(?:[ -]\d+)*")
IBAN_SCAN = re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9 ]{8,40}")
PHONE_SCAN = re.compile(r"\+?\(?\d[\d ().\-]{5,}\d")


def covered(spans, a, b):
    return any(s <= a and b <= e for s, e in spans)


def overlaps(spans, a, b):
    return any(a < e and s < b for s, e in spans)


def scan_unlabelled(text, spans):
    """Independent scanners: anything sensitive under the policy that is not inside a labelled span."""
    problems = []
    for m in EMAIL_RE.finditer(text):
        if not covered(spans, m.start(), m.end()):
            problems.append(("email", m.group()))
    for m in IPV4_SCAN.finditer(text):
        if is_ip(m.group()) and not covered(spans, m.start(), m.end()):
            problems.append(("ip", m.group()))
    for m in IPV6_SCAN.finditer(text):
        v = m.group()
        if v.count(":") >= 2 and is_ip(v) and not covered(spans, m.start(), m.end()):
            problems.append(("ip6", v))
    for m in SSN_SCAN.finditer(text):
        if is_ssn(m.group()) and not overlaps(spans, m.start(), m.end()):
            problems.append(("ssn", m.group()))
    for m in DIGIT_RUN.finditer(text):
        groups = [(g.start() + m.start(), g.end() + m.start()) for g in re.finditer(r"\d+", m.group())]
        for i in range(len(groups)):
            for j in range(i, len(groups)):
                a, b = groups[i][0], groups[j][1]
                cand = text[a:b]
                if is_card(cand) and not overlaps(spans, a, b):
                    problems.append(("card", cand))
    for m in IBAN_SCAN.finditer(text):
        raw = m.group()
        cc = raw[:2]
        if cc not in IBAN_LEN:
            continue
        compact, end = "", 0
        for k, ch in enumerate(raw):
            if ch != " ":
                compact += ch
            if len(compact) == IBAN_LEN[cc]:
                end = k + 1
                break
        if end and iban_mod97(compact) == 1 and not overlaps(spans, m.start(), m.start() + end):
            problems.append(("iban", raw[:end]))
    for r in SECRET_RES:
        for m in r.finditer(text):
            if not overlaps(spans, m.start(), m.end()) and m.group() not in ALLOWED_SECRET_LOOKALIKES:
                problems.append(("secret", m.group()[:40]))
    return problems


def build():
    rows, errors, review = [], [], []
    for n, template in enumerate(PROMPTS, 1):
        rid = f"g{n:03d}"
        text, found = render(template)
        spans = []
        for pos, det, value in found:
            if text[pos:pos + len(value)] != value:
                errors.append(f"{rid}: {det} value not at its position")
            if not CHECKS[det](value):
                errors.append(f"{rid}: {det} value fails its check: {value[:60]!r}")
            spans.append((pos, pos + len(value)))
        for det, value in {(d, v) for _, d, v in found}:
            listed = sum(1 for _, d, v in found if v == value)
            if text.count(value) != listed:
                errors.append(f"{rid}: {value[:40]!r} occurs {text.count(value)}x but is listed {listed}x")
        for kind, value in scan_unlabelled(text, spans):
            errors.append(f"{rid}: unlabelled {kind}: {value!r}")
        # card digits inside a labelled non-card value (phones) must not themselves look like a card
        for pos, det, value in found:
            if det == "phone" and is_card(re.sub(r"\D", "", value)):
                errors.append(f"{rid}: phone {value!r} is also a valid card number")
        for m in PHONE_SCAN.finditer(text):
            if sum(c.isdigit() for c in m.group()) >= 7 and not overlaps(spans, m.start(), m.end()):
                review.append(f"{rid}: {m.group()!r}")
        rows.append({
            "id": rid,
            "text": text,
            "findings": [{"detector": d, "value": v} for _, d, v in sorted(found, key=lambda f: f[0])],
        })
    return rows, errors, review


def main():
    rows, errors, review = build()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    # re-read: valid JSONL, every value a substring of its text
    with open(OUT, encoding="utf-8") as f:
        back = [json.loads(line) for line in f]
    assert back == rows
    for row in back:
        for fnd in row["findings"]:
            assert fnd["value"] in row["text"] and fnd["detector"] in CHECKS

    prompts = {d: 0 for d in DETECTORS}
    values = {d: 0 for d in DETECTORS}
    for row in rows:
        for d in {f["detector"] for f in row["findings"]}:
            prompts[d] += 1
        for fnd in row["findings"]:
            values[fnd["detector"]] += 1
    negatives = sum(1 for r in rows if not r["findings"])
    multi = sum(1 for r in rows if len({f["detector"] for f in r["findings"]}) > 1)
    print(f"wrote {OUT}: {len(rows)} prompts")
    print(f"{'detector':8} {'prompts':>8} {'findings':>9}")
    for d in DETECTORS:
        print(f"{d:8} {prompts[d]:8d} {values[d]:9d}")
    print(f"prompts with no findings: {negatives}")
    print(f"prompts with findings of more than one kind: {multi}")
    if "--review" in sys.argv:
        print("\nphone-like strings outside labelled spans (check they are not phone numbers):")
        print("\n".join(review))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Builds tests/data/guard/heldout.jsonl, the HELD-OUT test set for the sensitive-data guard.

Run with plain python3 (stdlib only):

    python3 tests/data/guard/build_heldout.py            # validate, write heldout.jsonl, print a summary
    python3 tests/data/guard/build_heldout.py --review   # also list phone-like strings left unlabelled

The detectors were tuned on labelled.jsonl (built by build.py). This set was written independently of
it, with new scenarios and new templates, so that precision/recall measured here are not inflated by
tuning. Do not tune detectors on this file; if a case here reveals a bug, fix the detector and add a
*different* regression case to build.py.

Format and label policy are exactly those of build.py (see the LABEL POLICY in its docstring): each line
is

    {"id": "h001", "text": "...", "findings": [{"detector": "card", "value": "3782 822463 10005"}, ...]}

`value` is the exact substring of `text`; findings are listed in order of appearance, one per occurrence;
`findings` is empty when nothing in the prompt is sensitive under the policy.

Decisions on cases the policy does not spell out (kept consistent throughout this file):
  * IPv4 followed by `:port` or by a CIDR suffix (`10.8.0.0/16`): only the dotted quad is labelled.
    IPv6 in brackets (`[2001:db8::10]:443`): only the address inside the brackets is labelled.
  * Phones written with a `00` international prefix (`0044 20 7946 0754`) or as contiguous E.164 inside
    JSON (`+14155550134`) are labelled (they are presented as phone numbers).
  * IBANs are labelled for any country whose IBAN length is known below, including a few countries
    outside build.py's table (CZ, HR); the BBAN is numeric for both.
  * Secrets are limited to the formats listed in the policy. AWS secret access keys, session tokens,
    passwords inside URLs/env files, GCP `private_key_id` values and the like are "other secrets in
    formats not listed" and are left unlabelled. GitHub fine-grained `github_pat_` tokens and Stripe
    `sk_live_`/`rk_live_` keys are not in the policy's list, so they do not appear in this file at all.
  * A PEM block escaped inside JSON ends at the END line's final `-----`; the trailing `\\n` is not
    part of the value.
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

SEED = 77031911
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "heldout.jsonl")
DEV = os.path.join(HERE, "labelled.jsonl")

rng = random.Random(SEED)

# --------------------------------------------------------------------------------------------------
# Checks (same definitions as build.py; IBAN table extended with CZ and HR)
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
    "AT": 20, "BE": 16, "CH": 21, "CZ": 24, "DE": 22, "DK": 18, "ES": 24, "FI": 18, "FR": 27,
    "GB": 22, "GR": 27, "HR": 21, "IE": 22, "IT": 27, "LU": 20, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "SE": 24,
}


def iban_mod97(compact):
    s = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97


def is_iban(value):
    if not (re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", value)
            or re.fullmatch(r"[A-Z]{2}\d{2}(?: [A-Z0-9]{4})* [A-Z0-9]{1,4}", value)):
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
# Value generators (own seed; values differ from build.py's)
# --------------------------------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
B64 = string.ascii_letters + string.digits + "+/"
HEX = "0123456789abcdef"


def rand_str(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def rand_digits(n):
    return "".join(rng.choice(string.digits) for _ in range(n))


CARD_BRANDS = {
    "visa": (lambda: rng.choice(["4", "45", "47", "49"]), 16),
    "mc": (lambda: str(rng.randint(51, 55)), 16),
    "mc2": (lambda: str(rng.randint(2221, 2720)), 16),
    "amex": (lambda: rng.choice(["34", "37"]), 15),
    "discover644": (lambda: str(rng.randint(644, 649)), 16),
    "discover65": (lambda: "65", 16),
    "jcb": (lambda: str(rng.randint(3528, 3589)), 16),
    "diners": (lambda: rng.choice(["36", "38", str(rng.randint(300, 305))]), 14),
    "unionpay19": (lambda: "62", 19),
    "maestro": (lambda: rng.choice(["5018", "5020", "5893", "6759", "6763"]), 16),
}


def group_card(d, fmt):
    if fmt == "plain":
        return d
    sep = " " if fmt == "space" else "-"
    n = len(d)
    if n in (14, 15):  # Amex 4-6-5, Diners 4-6-4
        parts = [d[:4], d[4:10], d[10:]]
    else:
        parts = [d[i:i + 4] for i in range(0, n, 4)]
    return sep.join(parts)


def gen_card(spec):
    brand, fmt = spec.split(",")
    prefix_fn, length = CARD_BRANDS[brand]
    while True:
        p = prefix_fn()
        partial = p + rand_digits(length - len(p) - 1)
        d = partial + luhn_check_digit(partial)
        if len(set(d)) > 4:
            return group_card(d, fmt)


def gen_badluhn(spec):
    brand, fmt = spec.split(",")
    prefix_fn, length = CARD_BRANDS[brand]
    partial = prefix_fn()
    partial += rand_digits(length - len(partial) - 1)
    good = luhn_check_digit(partial)
    bad = rng.choice([c for c in string.digits if c != good])
    return group_card(partial + bad, fmt)


def gen_badiin(spec):
    first, length, fmt = spec.split(",")
    partial = first + rand_digits(int(length) - 2)
    d = partial + luhn_check_digit(partial)
    assert not known_iin(d)
    return group_card(d, fmt)


BBAN = {
    "AT": [("n", 16)], "BE": [("n", 12)], "CH": [("n", 17)], "CZ": [("n", 20)], "DE": [("n", 18)],
    "DK": [("n", 14)], "ES": [("n", 20)], "FI": [("n", 14)], "FR": [("n", 23)],
    "GB": [(["BUKB", "NAIA", "SRLG", "CLYD"], 1), ("n", 14)], "GR": [("n", 23)], "HR": [("n", 17)],
    "IE": [(["AIBK", "BOFI", "ULSB"], 1), ("n", 14)], "IT": [("a", 1), ("n", 22)], "LU": [("n", 16)],
    "NL": [(["ASNB", "KNAB", "SNSB", "BUNQ"], 1), ("n", 10)], "NO": [("n", 11)], "PL": [("n", 24)],
    "PT": [("n", 21)], "SE": [("n", 20)],
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
    cc, fmt = spec.split(",")
    return fmt_iban(iban_with_check(cc, make_bban(cc)), fmt)


def has_card_run(value):
    """True if some run of digit groups inside value is itself a valid card number."""
    groups = re.findall(r"\d+", value)
    return any(is_card(" ".join(groups[i:j + 1])) or is_card("".join(groups[i:j + 1]))
               for i in range(len(groups)) for j in range(i, len(groups)))


def no_card_run(gen):
    def wrapped(spec):
        while True:
            v = gen(spec)
            if not has_card_run(v):
                return v
    return wrapped


@no_card_run
def gen_iban_badcheck(spec):
    cc, fmt = spec.split(",")
    good = iban_with_check(cc, make_bban(cc))
    cd = int(good[2:4])
    bad = f"{cc}{rng.choice([x for x in range(2, 99) if x != cd]):02d}{good[4:]}"
    assert iban_mod97(bad) != 1
    return fmt_iban(bad, fmt)


@no_card_run
def gen_iban_badlen(spec):
    cc, fmt = spec.split(",")
    bad = iban_with_check(cc, make_bban(cc, delta=rng.choice([-2, -1, 1])))
    assert iban_mod97(bad) == 1 and len(bad) != IBAN_LEN[cc]
    return fmt_iban(bad, fmt)


USED_SSN = set()


def gen_ssn(spec):
    sep = "-" if spec == "dash" else " "
    while True:
        area = rng.randint(1, 899)
        if area == 666:
            continue
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
        v = f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"
        if v.replace(" ", "-") not in ("078-05-1120", "219-09-9999", "123-45-6789") and v not in USED_SSN:
            USED_SSN.add(v)
            return v


def gen_ssn_bad(spec):
    kind, fmt = spec.split(",")
    sep = "-" if fmt == "dash" else " "
    area, group, serial = rng.randint(1, 665), rng.randint(1, 99), rng.randint(1, 9999)
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


def gen_jwt(spec):
    alg = {"rs256": "RS256", "es256": "ES256"}.get(spec, "HS256")
    header = {"typ": "JWT", "alg": alg}
    if alg != "HS256":
        header["kid"] = rand_str(HEX, 8)
    iat = 1727000000 + rng.randint(0, 4000000)
    payload = {
        "iss": rng.choice(["https://auth.ledgerly.io/", "https://sso.internal.example", "gw-issuer"]),
        "sub": rand_str(HEX, 24),
        "aud": rng.choice(["semroute", "api", "billing-web"]),
        "scope": rng.choice(["chat:write", "read write", "admin"]),
        "tenant": rng.choice(["t_0042", "acme", "northwind"]),
        "iat": iat,
        "exp": iat + rng.choice([600, 1800, 7200]),
    }
    nsig = {"RS256": 256, "ES256": 64, "HS256": 32}[alg]
    sig = bytes(rng.getrandbits(8) for _ in range(nsig))
    enc = lambda o: b64url(json.dumps(o, separators=(",", ":")).encode())
    return f"{enc(header)}.{enc(payload)}.{b64url(sig)}"


PEM_KINDS = {
    "pem_rsa": ("RSA PRIVATE KEY", "MIIEpAIBAAKCAQEA", 64, (8, 11)),
    "pem_pkcs8": ("PRIVATE KEY", "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQ", 64, (8, 11)),
    "pem_pkcs8enc": ("ENCRYPTED PRIVATE KEY", "MIIFLTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI", 64, (6, 9)),
    "pem_ec": ("EC PRIVATE KEY", "MHcCAQEEIB", 64, (3, 3)),
    "pem_openssh": ("OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABD", 70, (6, 8)),
    "pem_csr": ("CERTIFICATE REQUEST", "MIICvDCCAaQCAQAwdzELMAkGA1UEBhMCREUxDzANBgNVBAgMBkJlcmxpbjEP", 64, (9, 12)),
    "pem_pub_rsa": ("RSA PUBLIC KEY", "MIIBCgKCAQEA", 64, (5, 6)),
}


def gen_pem(kind, spec):
    label, head, width, (lo, hi) = PEM_KINDS[kind]
    nlines = rng.randint(lo, hi)
    total = (width * nlines - rng.randint(5, 40)) // 4 * 4
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
    kind, _, opt = spec.partition(",")
    if kind == "openai":
        return "sk-" + rand_str(ALNUM, 48)
    if kind == "openai_proj":
        return "sk-proj-" + rand_str(URLSAFE, rng.randint(100, 130))
    if kind == "anthropic":
        return "sk-ant-api03-" + rand_str(URLSAFE, 93) + "AA"
    if kind in ("aws", "aws_asia"):
        return ("AKIA" if kind == "aws" else "ASIA") + rand_str(string.ascii_uppercase + "234567", 16)
    if kind == "github":
        return "ghp_" + rand_str(ALNUM, 36)
    if kind == "slack":
        return f"xoxb-{rand_digits(rng.choice([11, 12]))}-{rand_digits(13)}-{rand_str(ALNUM, 24)}"
    if kind == "google":
        return "AIzaSy" + rand_str(URLSAFE, 33)
    if kind == "jwt":
        return gen_jwt(opt)
    if kind.startswith("pem_"):
        return gen_pem(kind, opt)
    raise KeyError(kind)


def gen_uuid(spec):
    h = rand_str(HEX, 32)
    h = h[:12] + "4" + h[13:16] + rng.choice("89ab") + h[17:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def gen_jwt_header(spec):
    return b64url(json.dumps({"alg": "RS256", "kid": rand_str(HEX, 16), "typ": "JWT"},
                             separators=(",", ":")).encode())


GENERATED = {"card": gen_card, "iban": gen_iban, "ssn": gen_ssn, "secret": gen_secret}
NEAR_MISS = {
    "badluhn": gen_badluhn,
    "badiin": gen_badiin,
    "iban_badcheck": gen_iban_badcheck,
    "iban_badlen": gen_iban_badlen,
    "ssn_bad": gen_ssn_bad,
    "uuid": gen_uuid,
    "hex": lambda s: rand_str(HEX, int(s)),
    "sha1": lambda s: rand_str(HEX, 40),
    "sha256": lambda s: rand_str(HEX, 64),
    "b64": lambda s: rand_str(B64, int(s)),
    "alnum": lambda s: rand_str(ALNUM, int(s)),
    "pem_csr": lambda s: gen_pem("pem_csr", s),
    "pem_pub_rsa": lambda s: gen_pem("pem_pub_rsa", s),
    "jwt_header": gen_jwt_header,
}

# --------------------------------------------------------------------------------------------------
# Template markup (same convention as build.py)
#   ⟦det=literal⟧   a labelled finding written literally
#   ⟦det|spec⟧      a labelled finding generated from spec
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
    PROMPTS.append(textwrap.dedent(s).strip("\n"))


# ==================================================================================================
# HR, payroll, benefits
# ==================================================================================================

T("""
    I'm in People Ops. Turn this into an onboarding checklist for payroll and IT:
    New hire Marisol Dunleavy, starts Monday 2 Dec, SSN ⟦ssn|dash⟧, personal email ⟦email=marisol.dunleavy84@gmail.com⟧, mobile ⟦phone=(503) 555-0148⟧.
    Direct deposit: routing 123000848, account 4471902233. Needs a MacBook and badge access to floor 3 by day one.
""")
T("""
    Write a neutral summary of this exchange for the HR case file. No opinions.

    From: Priya Raman <⟦email=priya.raman@northwind-logistics.com⟧>
    To: ⟦email=hr-cases@northwind-logistics.com⟧
    Date: Tue, 8 Oct 2024 09:14:03 -0700
    Subject: Re: shift swap dispute

    I told Dale twice that I can't do Saturday closes because of childcare. He said to call him at ⟦phone=+1.971.555.0192⟧ to sort it out but he never picks up, and now I'm on the rota for three Saturdays in a row.
""")
T("""
    Compute total gross for this pay period and list anyone with a missing state code:

    employee_id,name,ssn,state,gross
    E-2291,Alvarez Tomas,⟦ssn|dash⟧,TX,3120.00
    E-2292,Brennan Kate,⟦ssn|dash⟧,,2875.50
    E-2295,Chu Wendell,⟦ssn|dash⟧,WA,4010.25
""")
T("""
    Validate this extracted W-2 against the IRS box definitions and tell me which fields look wrong:
    {"employer_ein": "47-2719035", "employee_ssn": "⟦ssn|dash⟧", "box1_wages": 68412.55, "box2_fed_withheld": 7210.00, "box12": [{"code": "D", "amount": 4100.00}], "state": "OR", "tax_year": 2024}
""")
T("Our background-check vendor bounced this order: candidate Jerome Castellanos, DOB 11/04/1990, SSN ⟦ssn|space⟧, prior addresses in Tucson and Mesa. The error says 'SSN format invalid'. Is the spacing the problem, and what format does their API want?")
T("Filing in FreeTaxUSA. Dependents: Maya, SSN ⟦ssn|dash⟧, and Eli, SSN ⟦ssn|dash⟧. Eli turned 17 in October — do I still get the full child tax credit for him, or the $500 credit for other dependents?")
T("Write a cover letter for a long-term disability appeal. Claimant Donna Reyes, SSN ⟦ssn|dash⟧, claim DIS-448120-B, denied on 2024-08-19 for 'insufficient objective evidence'. Her physician Dr. Amit Kulkarni can be reached at ⟦phone=(702) 555-0177⟧ and by email at ⟦email=akulkarni@desertridge-neuro.com⟧.")
T("""
    Can you fill in the missing fields of this rental application from the notes?
    Applicant: Terrence Oduya | SSN: ⟦ssn|dash⟧ | Phone: ⟦phone=312.555.0126⟧ | Email: ⟦email=t.oduya@icloud.com⟧
    Employer: Lakeshore Freight, 4 yrs, $71,500/yr. Current rent $1,450. Pets: one cat.
""")
T("My loan officer asked me to 'reply with SSN for the soft pull'. I sent ⟦ssn|space⟧ and my wife's ⟦ssn|space⟧. Was that a mistake? How do I tell if the request was phishing?")
T("""
    Refactor this pytest fixture; a reviewer said it pulls real data:

    @pytest.fixture
    def applicant():
        return Applicant(name="Gloria Estefan-Ruiz", ssn="⟦ssn|dash⟧", dob=date(1979, 5, 14), phone="⟦phone=+1 786 555 0109⟧")
""")
T("FAFSA question: my mom's SSN is ⟦ssn|dash⟧ but the form rejected it along with her 2022 AGI of $54,118. Is the mismatch likely the SSN or the AGI?")
T("""
    Convert this offboarding note into a JIRA ticket for IT:
    Leaver: Sven Adalsteinsson, last day 2024-12-20. Revoke VPN (assigned ⟦ip=10.99.4.27⟧), forward mail from ⟦email=sven.a@kolibri-games.com⟧ to his manager, keep the laptop for 30 days.
""")
T("Bitte formuliere eine kurze Nachricht an die Personalabteilung: Meine neue Handynummer ist ⟦phone=+49 176 5550 3318⟧ und meine private E-Mail ⟦email=jonas.brecht@web.de⟧. Die Lohnabrechnung soll bitte ab Januar an diese Adresse gehen.")

# ==================================================================================================
# Medical billing / insurance
# ==================================================================================================

T("Our clinic's claim for Gerald Thorne (DOB 1957-03-22, MBI 1EG4-TE5-MK73) was denied with CARC 16. The biller put his SSN ⟦ssn|dash⟧ on the secondary claim to the supplemental carrier. What does CARC 16 mean and what do we resubmit? Provider callback: ⟦phone=(614) 555-0119⟧.")
T("Hola, trabajo en facturación médica en Miami. El paciente Rafael Ibarra tiene el seguro vencido; su número de Seguro Social es ⟦ssn|space⟧ y su teléfono ⟦phone=(305) 555-0163⟧. ¿Cómo le explico en español sencillo qué es un 'deducible' y un 'copago'?")
T("""
    Explain this EOB line to the patient in plain English:
    Member: K. Albright | Member ID W2X81-77310 | Claim 2024-11-0788213
    CPT 99214 billed $245.00, allowed $162.18, plan paid $129.74, patient responsibility $32.44 (coinsurance)
    Questions? Call member services at ⟦phone=1-800-555-0187⟧ (TTY 711).
""")
T("The hospital billing office in Leeds keeps sending my invoices to the wrong address. Their number is ⟦phone=0113 496 0734⟧ and my NHS number is 943 476 5919. Draft a complaint letter asking them to update my details.")

# ==================================================================================================
# CRM exports, sales, support
# ==================================================================================================

T("""
    Dedupe this export by email (case-insensitive) and tell me which rows you merged:

    first_name,last_name,email,phone,country,lifecycle_stage
    Kenji,Watanabe,⟦email=k.watanabe@sakura-denki.co.jp⟧,⟦phone=+81 3-5412-7789⟧,JP,customer
    Olu,Adebayo,⟦email=olu@brightpath.ng⟧,⟦phone=+234 803 555 0171⟧,NG,lead
    kenji,watanabe,⟦email=K.Watanabe@sakura-denki.co.jp⟧,⟦phone=+81-3-5412-7789⟧,JP,opportunity
    Hannah,Okafor,⟦email=hannah.okafor@fernleaf.co.uk⟧,⟦phone=0044 20 7946 0754⟧,GB,lead
""")
T("""
    Score these inbound leads 1-5 for fit (we sell to logistics companies with 200+ staff):

    | Company | Contact | Email | Phone | Employees |
    |---|---|---|---|---|
    | Rhein Cargo GmbH | M. Vogt | ⟦email=m.vogt@rheincargo.de⟧ | ⟦phone=+49 221 555 8830⟧ | 640 |
    | Pampa Fletes SRL | L. Quiroga | ⟦email=lquiroga@pampafletes.com.ar⟧ | ⟦phone=+54 11 5555-0143⟧ | 85 |
    | Harbourline Ltd | S. Patel | ⟦email=spatel@harbourline.co.nz⟧ | ⟦phone=+64 9 555 0162⟧ | 230 |
""")
T("""
    Classify the intent of this chat and flag compliance issues:

    [10:02] Agent (Tom): SkyRoute support, Tom speaking — what can I do for you today?
    [10:02] Customer: hi so my booking didnt go through but the money left my account
    [10:03] Customer: card was ⟦card|mc2,dash⟧
    [10:03] Agent (Tom): Sorry about that! Can you confirm the phone number on the booking?
    [10:04] Customer: ⟦phone=+61 2 8015 4427⟧ or email ⟦email=d.nguyen.travels@bigpond.com⟧
""")
T("""
    Write a reply explaining we never take card numbers by email and asking them to delete it from the thread.

    > On Mon, 4 Nov 2024, Beatrice Holm <⟦email=bea.holm@outlook.com⟧> wrote:
    > Just charge the renewal to my Amex ⟦card|amex,space⟧, exp 09/27, and stop sending reminders please.
""")
T("Zendesk macro needed. Ticket #58812: customer Wojciech says his Visa ⟦card|visa,space⟧ was charged 3 times for one €19 subscription; wants callback on ⟦phone=+48 601 555 214⟧. Write a macro for duplicate-charge refunds that doesn't repeat the card number back.")
T("""
    Voice-bot transcript, please extract the caller's intent and any entities as JSON:
    BOT: What's the best number to reach you?
    CALLER: it's ⟦phone=(917) 555-0138⟧
    BOT: And the email on the account?
    CALLER: ⟦email=ray.castellano@aol.com⟧, I want to cancel before the annual renewal
""")
T("Hola, necesito una respuesta para un cliente que escribió: 'Me cobraron dos veces en la tarjeta ⟦card|visa,space⟧, llámenme al ⟦phone=+34 612 345 678⟧'. Quiero disculparme y explicar que el reembolso tarda de 5 a 10 días hábiles.")
T("Rédige une réponse pour ce client : « Bonjour, ma carte ⟦card|mc,plain⟧ a été débitée mais je n'ai jamais reçu la commande 4471-B. Rappelez-moi au ⟦phone=06 12 55 47 83⟧. » Ton poli, sans répéter le numéro de carte.")
T("Oi! Pode escrever uma mensagem de WhatsApp para a cliente Fernanda avisando que o pedido 88213 atrasou? O número dela é ⟦phone=+55 11 91234-5678⟧ e o e-mail ⟦email=fernanda.rocha@uol.com.br⟧. Previsão de entrega: 28/11.")
T("Our footer has <a href=\"mailto:⟦email=support@tidewater-bikes.com⟧?subject=Warranty claim\">Email us</a> and Outlook opens with a broken subject line. How do I URL-encode the subject properly?")
T("""
    Salesforce data loader fails on these rows with INVALID_EMAIL_ADDRESS. Which ones are actually invalid?

    Id,Email
    0035g00000XyZ1A,⟦email=ops+alerts@quarry-labs.io⟧
    0035g00000XyZ1B,"Mia Tan <⟦email=mia.tan@quarry-labs.io⟧>"
    0035g00000XyZ1C,⟦email=FINANCE@QUARRY-LABS.IO⟧
    0035g00000XyZ1D,finance@quarry-labs
""")

# ==================================================================================================
# Payments, invoices, banking
# ==================================================================================================

T("""
    Extract supplier, due date, amount and bank details from this invoice into JSON:

    FAKTURA VAT nr FV/2024/11/0387
    Sprzedawca: Drukarnia Wisła Sp. z o.o., NIP 526-104-08-27
    Data wystawienia: 2024-11-05, termin płatności: 14 dni
    Do zapłaty: 18 450,00 PLN
    Rachunek: ⟦iban|PL,space⟧ (BIC: BPKOPLPW)
""")
T("Bitte formuliere eine kurze E-Mail an die Buchhaltung: Die Rückerstattung über 640,00 € für Auftrag 77120 geht an Frau Katharina Pölzl, IBAN ⟦iban|AT,space⟧, Verwendungszweck „Storno 77120“. Rückfragen bitte an ⟦phone=+43 1 5134 2270⟧.")
T("Peux-tu rédiger un rappel de paiement poli ? La facture F-2024-118 (2 310,50 €) est impayée depuis 45 jours. Coordonnées bancaires : ⟦iban|BE,space⟧ — contact comptabilité : ⟦email=compta@atelier-verhaegen.be⟧, ⟦phone=+32 2 555 12 34⟧.")
T("Ciao, devo fare il bonifico per l'affitto di dicembre. Il proprietario mi ha scritto: IBAN ⟦iban|IT,plain⟧, intestato a Giulia Ferrante, causale 'canone dicembre'. Il suo cellulare è ⟦phone=+39 347 555 0192⟧. Mi prepari un messaggio di conferma?")
T("Our Oslo contractor's invoice lists bank account ⟦iban|NO,space⟧. The ERP rejects it as 'too short'. Is a 15-character IBAN really valid for Norway, and how do we whitelist it?")
T("""
    Check this payment batch for obvious errors before I upload it to the bank:

    payee;iban;amount_sek;reference
    Nordvik Trä AB;⟦iban|SE,plain⟧;48 200,00;INV-88213
    Kaffekompaniet i Malmö;⟦iban|SE,plain⟧;3 150,00;INV-88219
    Bergström Konsult;⟦!iban_badcheck|SE,plain⟧;12 900,00;INV-88230
""")
T("""
    Payouts to this connected account fail with `account_closed`, but the seller says the account is open. Request we sent:

    POST /v1/accounts/acct_1PqZ8c/external_accounts
    {"external_account": {"object": "bank_account", "country": "IE", "currency": "eur", "account_number": "⟦iban|IE,plain⟧", "account_holder_name": "Gallagher Joinery Ltd"}}
""")
T("Olá! Preciso de um e-mail formal para o senhorio a confirmar a transferência da caução de 1.800,00 €. Os dados dele: IBAN ⟦iban|PT,space⟧, telemóvel ⟦phone=+351 912 345 678⟧. Obrigado!")
T("""
    Make this freelancer invoice template look more professional (markdown):

    **Invoice 2024-031** — Aino Virtanen, UX consulting
    12 days × €640 = €7,680.00, VAT 0% (reverse charge)
    Pay to: ⟦iban|FI,space⟧, Nordea, within 21 days
    Questions: ⟦email=aino@virtanen.design⟧
""")
T("A UK customer wants a refund by bank transfer. They gave sort code 20-45-77, account 93015562 and also the IBAN ⟦iban|GB,space⟧. Which should we use for an international payout from our Dutch entity?")
T("Kannst du eine freundliche Erinnerung an unseren Mieter schreiben? Der Mietzins von CHF 2'350.– für November ist noch offen. Einzahlung bitte auf ⟦iban|CH,space⟧, Vermerk „Miete Nov Whg 3.2“.")
T("""
    Fill the subscription form for the Luxembourg fund from these notes:
    Investor: Camille Reuter, email ⟦email=c.reuter@pt.lu⟧
    Redemption account: ⟦iban|LU,plain⟧
    Amount: EUR 25,000, class A acc, ISIN LU0123456789
""")
T("Greek supplier Papadakis Olive Co sent a proforma asking for 30% upfront (€4,125) to ⟦iban|GR,plain⟧. What checks should I do before paying a new supplier's bank account?")
T("Split the dinner bill (€186.40 for 4) and write a message asking everyone to pay me on bunq, IBAN ⟦iban|NL,space⟧, before Friday.")
T("Our Copenhagen landlord changed banks; new account ⟦iban|DK,space⟧. Draft an email to finance asking them to update the standing order and confirm via phone on ⟦phone=+45 32 55 01 84⟧.")
T("We need to pay a Prague translation agency CZK 38 400. Their invoice says IBAN ⟦iban|CZ,space⟧, SWIFT KOMBCZPP, variable symbol 2024110517. Which fields go where in a SEPA vs SWIFT transfer form?")
T("Croatian vendor invoice, due 2024-12-15: 'Molimo uplatu na ⟦iban|HR,plain⟧, poziv na broj HR00 2024-118'. Translate the payment instruction to English and explain what 'poziv na broj' is.")
T("Erstelle bitte ein SEPA-Lastschriftmandat für unseren Verein: Mitglied Henrike Sauer, Kontoinhaberin dieselbe, IBAN ⟦iban|DE,space⟧, Gläubiger-ID DE98ZZZ09999999999, Mandatsreferenz MGL-00417, Beitrag 96,00 € jährlich.")
T("Necesito un texto para pedir a un cliente que cambie la domiciliación. Su nueva cuenta es ⟦iban|ES,plain⟧ y el recibo de diciembre (312,40 €) ya salió contra la antigua. ¿Cómo se lo explico?")
T("Voici le RIB de notre nouveau prestataire : ⟦iban|FR,space⟧, domiciliation Crédit Agricole Lyon. Écris un mail à la comptabilité pour le créer dans le fichier fournisseurs, avec copie à ⟦email=achats@maison-delorme.fr⟧.")
T("""
    Our request logger printed a raw body from the checkout service. Is this a PCI incident, and what do we do now?

    2024-11-12T09:41:07.551Z INFO checkout POST /pay body={"amount":4999,"currency":"eur","source":{"pan":"⟦card=5200828282828210⟧","expiry":"04/27","cvc":"***"}}
""")
T("OCR'd from a scanned receipt, please reconcile against the statement: 'CARD NO: ⟦card=6011 0009 9013 9424⟧  AUTH 004127  AMOUNT $218.40  DATE 10/29/24'. The statement shows $218.04 — typo or a different charge?")
T("A customer from Zagreb paid with Diners Club ⟦card|diners,space⟧ and the charge has been pending for 5 days. Is that normal for Diners, and when should we escalate?")
T("Our checkout shows the Visa logo while a customer types ⟦card|unionpay19,plain⟧. Which prefix rule in our card-brand sniffing is wrong for UnionPay?")
T("Customer says their Maestro ⟦card|maestro,dash⟧ works in shops but fails online. Explain the 3-D Secure requirement for Maestro to them in two sentences.")
T("Legacy system test: does our validator still accept 13-digit Visa numbers like ⟦card=4222222222222⟧? Write a Jest test for it.")
T("""
    QA plan for the new checkout. Confirm each of these test cards exercises the path I wrote next to it:
    - ⟦card=4000 0566 5566 5556⟧ → Visa debit, should succeed
    - ⟦card=3714 496353 98431⟧ → Amex, should succeed and show the 4-digit CID field
    - ⟦card=2223 0031 2200 3222⟧ → Mastercard 2-series, should succeed
    - ⟦!badluhn|visa,space⟧ → typo, should fail inline validation
""")
T("""
    Dispute export from the acquirer. Group by reason code and total the amounts:

    dispute_id,card_number,amount,reason
    DP-30117,⟦card|discover644,plain⟧,89.99,4853
    DP-30121,⟦card|discover65,plain⟧,240.00,4837
    DP-30126,⟦card|jcb,plain⟧,15.50,4853
""")
T("""
    Turn this booking confirmation into a short itinerary for my assistant; leave payment details out:

    Hotel Kasumi Garden Shinjuku — Confirmation 5521-8830
    Guest: Lena Hoffmann, ⟦email=lena.hoffmann@posteo.de⟧
    Check-in 2025-03-18 15:00 / check-out 2025-03-22 11:00, Superior Twin, 4 nights
    Front desk: ⟦phone=+81 3-5927-4410⟧
    Guaranteed with JCB ⟦card|jcb,space⟧
""")
T("""
    My travel agent sent this. Is there anything I should worry about?

    PNR: K7TQ9L  |  AF 1381 CDG→FCO 2025-01-09 07:15  |  Seat 18F
    Passenger contact: ⟦phone=+33 6 55 21 87 40⟧ / ⟦email=p.lambert@free.fr⟧
    FOP: CC AX ⟦card|amex,plain⟧ EXP 0326
""")
T("A user pasted the card ⟦card|amex,dash⟧ into our support chatbot. What should the bot reply, and should we purge the message from the conversation logs?")
T("Ciao, il negozio online mi ha addebitato due volte sulla carta ⟦card|mc,space⟧ l'ordine 2024/IT/5531. Mi scrivi un reclamo formale da mandare a ⟦email=assistenza@casa-fiori.it⟧?")

# ==================================================================================================
# Infrastructure, logs, config
# ==================================================================================================

T("""
    We're seeing 499s from the load balancer. What do these lines tell you?

    ⟦ip=203.0.113.77⟧ - - [14/Nov/2024:03:12:55 +0000] "POST /v1/chat/completions HTTP/1.1" 499 0 "-" "python-httpx/0.27.0" rt=60.001 upstream=⟦ip=10.1.2.3⟧:8080
    ⟦ip=198.51.100.4⟧ - - [14/Nov/2024:03:12:56 +0000] "POST /v1/embeddings HTTP/1.1" 200 8812 "-" "openai-node/4.52.0" rt=0.143 upstream=⟦ip=10.1.2.4⟧:8080
""")
T("""
    Is this a brute-force attempt or just a misconfigured CI runner?

    Nov 14 02:01:17 bastion sshd[28817]: Invalid user oracle from ⟦ip=45.148.10.82⟧ port 40122
    Nov 14 02:01:19 bastion sshd[28819]: Invalid user ubuntu from ⟦ip=45.148.10.82⟧ port 40388
    Nov 14 02:03:40 bastion sshd[28840]: Accepted publickey for ci-runner from ⟦ip=2a02:8070:c18f:4c00:d1e2:91ff:fe3a:6b12⟧ port 55210 ssh2: ED25519 SHA256:⟦!b64|43⟧
""")
T("""
    Bug: gateway fails health checks on dual-stack nodes

    Steps: deploy 0.9.2 on a node whose eth1 only has a link-local IPv6 address.
    Observed: `bind: cannot assign requested address` for ⟦ip=fe80::a8c2:3bff:fe41:17d0⟧ (no zone id), then the fallback to ⟦ip=10.12.7.31⟧:8080 works.
    Expected: skip link-local addresses unless a scope id is configured.
""")
T("""
    Explain what these rules do and whether the order is wrong:

    -A INPUT -s ⟦ip=192.0.2.10⟧/32 -p tcp --dport 22 -j ACCEPT
    -A INPUT -s ⟦ip=10.8.0.0⟧/16 -p tcp --dport 9100 -j ACCEPT
    -A INPUT -p tcp --dport 22 -j DROP
    -A INPUT -d ⟦ip=224.0.0.251⟧ -p udp --dport 5353 -j ACCEPT
""")
T("""
    After editing /etc/hosts, `curl http://registry.internal` still goes to the old box. Contents:

    ⟦ip=127.0.0.1⟧   localhost
    ⟦ip=::1⟧         localhost ip6-localhost
    ⟦ip=10.60.2.15⟧  registry.internal
    # ⟦ip=10.60.2.14⟧  registry.internal   (old)
""")
T("""
    Pod is stuck in CrashLoopBackOff. Relevant `kubectl describe` output:

    Name:         router-7d9c8b6f4-xk2lq
    Namespace:    llm-prod
    Node:         ip-10-0-3-21.ec2.internal/⟦ip=10.0.3.21⟧
    IP:           ⟦ip=10.244.1.17⟧
    Containers:
      router:
        Image:      ghcr.io/semroute/router@sha256:⟦!sha256|⟧
        Limits:     cpu: 2, memory: 1Gi
        Requests:   cpu: 500m, memory: 512Mi
        Last State: Terminated, Reason: OOMKilled, Exit Code: 137
""")
T("""
    The AAAA record doesn't resolve. Anything wrong with this zone snippet?

    api      300 IN A     ⟦ip=198.51.100.42⟧
    api      300 IN AAAA  ⟦ip=2001:db8:4b1e::7a:1f02⟧
    www      300 IN CNAME api.example.net.
""")
T("""
    Why does failover never trigger with this sentinel.conf?

    sentinel monitor cache-main ⟦ip=10.30.1.5⟧ 6379 2
    sentinel down-after-milliseconds cache-main 5000
    sentinel announce-ip ⟦ip=10.30.1.9⟧
    bind ⟦ip=127.0.0.1⟧ ⟦ip=::1⟧
""")
T("Our Envoy access log shows x-forwarded-for: \"⟦ip=62.210.16.91⟧, ⟦ip=172.31.5.12⟧\" and downstream_remote_address [⟦ip=2001:db8:4006:812::200e⟧]:443. Which one should rate limiting key on?")
T("""
    Postgres refuses connections from the app subnet. pg_hba.conf:

    host  all  all  ⟦ip=127.0.0.1⟧/32      scram-sha-256
    host  app  app  ⟦ip=10.42.0.0⟧/16      scram-sha-256
    hostssl all all ⟦ip=0.0.0.0⟧/0         reject
    # the app pods have addresses like ⟦ip=10.43.7.19⟧
""")
T("""
    Der Netzwerkdrucker unter ⟦ip=192.168.178.44⟧ ist seit dem Router-Tausch nicht mehr erreichbar, der Laptop hat ⟦ip=192.168.0.23⟧. Woran liegt das und wie stelle ich den Drucker um? Bei Fragen bitte an ⟦email=it-hilfe@praxis-lindner.de⟧.
""")
T("Le serveur de fichiers ⟦ip=10.0.0.15⟧ ne répond plus depuis la mise à jour, alors que le ping vers ⟦ip=10.0.0.254⟧ fonctionne. Donne-moi une procédure de diagnostic étape par étape pour un technicien débutant.")
T("""
    Mi spieghi questo errore? Il client si collega da [⟦ip=2a01:4f8:c17:b8f::2⟧] ma il log dice 'connection reset by peer':
    2024-11-13 22:41:08 WARN  tls: handshake failed remote=⟦ip=93.184.216.34⟧:50122 err="tls: unknown certificate authority"
""")
T("""
    Terraform plan for our VPC. Why does the peering route conflict?

    resource "aws_route" "to_shared" {
      route_table_id            = aws_route_table.private.id
      destination_cidr_block    = "⟦ip=100.64.0.0⟧/10"
      vpc_peering_connection_id = "pcx-0a1b2c3d4e5f67890"
    }
    # private subnet gateway: ⟦ip=172.16.32.1⟧
""")
T("""
    WireGuard peer can handshake but no traffic flows. Config:

    [Interface]
    Address = ⟦ip=10.66.66.2⟧/32, ⟦ip=fd42:42:42::2⟧/128
    [Peer]
    Endpoint = ⟦ip=185.199.110.153⟧:51820
    AllowedIPs = ⟦ip=0.0.0.0⟧/0, ::/0
""")
T("""
    Bug: password reset emails bounce for some tenants
    Env: semroute 0.14.2, SMTP relay at ⟦ip=10.12.7.40⟧:587
    ```
    2024-11-13T16:20:11Z WARN mailer: 550 5.1.1 <⟦email=r.okonkwo@tenant-acme.example⟧>: Recipient address rejected
    2024-11-13T16:20:11Z WARN mailer: retry scheduled in 300s
    ```
    Is it our relay or their MX?
""")

# ==================================================================================================
# Secrets in code, config, CI
# ==================================================================================================

T("""
    Why does `kubectl apply` say the data values must be base64? Manifest:

    apiVersion: v1
    kind: Secret
    metadata:
      name: gateway-upstreams
      namespace: llm-prod
    type: Opaque
    data:
      OPENAI_API_KEY: ⟦secret|openai⟧
      UPSTREAM_HOST: ⟦ip=172.20.14.9⟧
      ALERT_EMAIL: ⟦email=oncall@llm-platform.example.org⟧
""")
T("""
    Docker compose picks up some of these vars but not others. Anything wrong with the file?

    # .env.production
    APP_ENV=production
    DATABASE_URL=postgres://billing:Winter2024!@⟦ip=10.40.0.12⟧:5432/billing
    AWS_ACCESS_KEY_ID=⟦secret|aws⟧
    AWS_REGION = eu-west-1
    SLACK_BOT_TOKEN="⟦secret|slack⟧"
    SMTP_FROM=⟦email=no-reply@billing.fjordpay.no⟧
    export LOG_LEVEL=debug
""")
T("""
    This returns 401 from our staging gateway but works in Postman. What's different?

    curl -sS -X POST https://⟦ip=10.20.30.40⟧:8443/v1/chat/completions \\
      -H "Authorization: Bearer ⟦secret|jwt,rs256⟧" \\
      -H "Content-Type: application/json" \\
      -d '{"model":"router-auto","messages":[{"role":"user","content":"ping"}]}'
""")
T("""
    The pipeline works but the security scan fails on .gitlab-ci.yml. How do I move these into protected CI/CD variables?

    variables:
      AWS_ACCESS_KEY_ID: "⟦secret|aws⟧"
      AWS_SECRET_ACCESS_KEY: "⟦!b64|40⟧"
      AWS_DEFAULT_REGION: eu-west-1
      DOCKER_DRIVER: overlay2
""")
T("""
    Why did this release step fail?

    Run gh release create v2.4.0 --notes-file CHANGES.md
      gh release create v2.4.0 --notes-file CHANGES.md
      shell: /usr/bin/bash -e {0}
      env:
        GH_TOKEN: ⟦secret|github⟧
    HTTP 403: Resource not accessible by integration (https://api.github.com/repos/acme-labs/router/releases)
""")
T("""
    Is this Next.js route handler safe, or does the key end up in the browser bundle?

    // app/api/summarise/route.ts
    import Anthropic from "@anthropic-ai/sdk";
    const anthropic = new Anthropic({ apiKey: "⟦secret|anthropic⟧" });
    export async function POST(req: Request) { /* ... */ }
""")
T("""
    The map renders grey tiles in production only. Loader config:

    const loader = new Loader({
      apiKey: "⟦secret|google⟧",
      version: "weekly",
      libraries: ["places"],
    });
""")
T(r"""
    Our sidecar can't parse the key from Vault. Output of `vault kv get -format=json secret/edge/tls`:

    {
      "request_id": "⟦!uuid|⟧",
      "lease_duration": 2764800,
      "data": {
        "data": {
          "tls_cert_path": "/etc/edge/tls.crt",
          "tls_key": "⟦secret|pem_pkcs8,escaped⟧\n",
          "owner": "⟦email=edge-team@fernway.io⟧"
        },
        "metadata": {"created_time": "2024-11-02T08:15:44.901Z", "version": 7}
      }
    }
""")
T("""
    Which values in this Ansible vars file should move into ansible-vault, and what's the least disruptive way to do it?

    tls:
      cert_path: /etc/ssl/gw.crt
      key_pem: |
        ⟦secret|pem_ec,indent4⟧
      listen: ⟦ip=0.0.0.0⟧
""")
T("""
    I want to store this in GitHub Actions secrets as SSH_DEPLOY_KEY for webfactory/ssh-agent. Do I include the header lines and the trailing newline?

    ⟦secret|pem_openssh⟧
""")
T("""
    Containers can't reach Redis from inside compose. Is it the REDIS_ADDR?

    services:
      gateway:
        image: ghcr.io/semroute/gateway:0.14.2
        environment:
          - OPENAI_API_KEY=⟦secret|openai_proj⟧
          - REDIS_ADDR=⟦ip=192.168.56.20⟧:6379
        ports: ["8080:8080"]
""")
T("""
    The bot posts fine from my laptop but not from the server. Config file:

    [slack]
    token = "⟦secret|slack⟧"
    channel = "#deploys"
    icon = ":rocket:"
""")
T("""
    From the HAR file of a failed login:

    "request": {"method": "GET", "url": "https://app.ledgerly.io/api/me", "headers": [{"name": "Cookie", "value": "session=⟦secret|jwt⟧; theme=dark"}]},
    "response": {"status": 401, "statusText": "Unauthorized"}

    Why would the server reject a token that hasn't expired?
""")
T("""
    A teammate added `print(dict(os.environ))` to a Lambda for debugging. CloudWatch now has:

    {'AWS_REGION': 'eu-central-1', 'AWS_ACCESS_KEY_ID': '⟦secret|aws_asia⟧', 'AWS_SECRET_ACCESS_KEY': '⟦!b64|40⟧', 'AWS_SESSION_TOKEN': '⟦!b64|280⟧', 'AWS_LAMBDA_FUNCTION_NAME': 'invoice-ocr'}

    Are these credentials still usable by someone who reads the logs, and for how long?
""")
T("""
    A customer pasted this into a support ticket by accident:

    ⟦secret|pem_rsa⟧

    Draft a reply telling them to rotate it, with the steps to revoke a key in our dashboard.
""")
T("""
    A colleague wants to send the staging TLS key to our hosting vendor over Slack, with the passphrase "in 1Password". Is that acceptable? This is what he'd paste:

    ⟦secret|pem_pkcs8enc⟧
""")
T("openai.AuthenticationError: Incorrect API key provided. I set it with `%env OPENAI_API_KEY=⟦secret|openai⟧` in the first notebook cell. What am I doing wrong?")
T("""
    Our gateway only loads the first provider from this config. Why?
    {"providers": {"claude": {"key": "⟦secret|anthropic⟧", "timeout_ms": 30000}, "gpt": {"key": "${OPENAI_API_KEY}", "base_url": "http://⟦ip=10.5.0.8⟧:4000/v1"}}}
""")
T("brew keeps hitting GitHub API rate limits even though my ~/.zshrc has `export HOMEBREW_GITHUB_API_TOKEN=⟦secret|github⟧`. How do I check whether brew actually sees it?")
T("""
    Add retries with exponential backoff to this script:

    import requests
    TOKEN = "⟦secret|jwt,es256⟧"
    r = requests.get("https://api.ledgerly.io/v2/invoices?status=open", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    r.raise_for_status()
""")
T("""
    Android build warns that the Maps key is exposed. AndroidManifest.xml:

    <meta-data
        android:name="com.google.android.geo.API_KEY"
        android:value="⟦secret|google⟧" />

    How do I restrict it to our package name and SHA-1?
""")
T("""
    Helm upgrade fails with 'error converting YAML to JSON'. values-prod.yaml:

    gateway:
      replicas: 3
      providers:
        openai:
          apiKey: ⟦secret|openai_proj⟧
        bedrock:
          accessKeyId: ⟦secret|aws⟧
        slackAlerts:
          token: ⟦secret|slack⟧
      resources:
        requests: {cpu: 250m, memory: 256Mi}
""")
T("Il nostro CI stampa nei log `ANTHROPIC_API_KEY=⟦secret|anthropic⟧` quando il job fallisce. Come configuro GitLab per mascherare la variabile?")
T("""
    Celery workers log this on startup — which setting is leaking?

    [2024-11-14 07:00:02,118: WARNING/MainProcess] broker_url = redis://⟦ip=10.3.3.7⟧:6379/0
    [2024-11-14 07:00:02,119: WARNING/MainProcess] OPENAI_API_KEY = ⟦secret|openai⟧
    [2024-11-14 07:00:02,119: WARNING/MainProcess] ADMIN_EMAILS = ['⟦email=ops@carrow-health.com⟧', '⟦email=sre-lead@carrow-health.com⟧']
""")

# ==================================================================================================
# Other positive scenarios (phones in various formats, email in prose)
# ==================================================================================================

T("""
    Make a one-page contact sheet grouped by role for the Lisbon offsite:

    - Venue coordinator, Ana Lopes: ⟦phone=+351 21 555 0142⟧
    - Catering (our London office arranges it): ⟦phone=(020) 7946 0321⟧
    - Coach company dispatcher: ⟦phone=+351 96 555 0173⟧
    - US travel desk: ⟦phone=+1.415.555.0134⟧
    - AV rental: ⟦phone=+49 30 5557 2210⟧
""")
T("""
    Parse this Twilio inbound SMS webhook in Express and reply 'STOP received':
    {"MessageSid":"SM⟦!hex|32⟧","AccountSid":"AC⟦!hex|32⟧","From":"⟦phone=+14155550134⟧","To":"⟦phone=+18885550101⟧","Body":"STOP"}
""")
T("The GP surgery's new appointment line is ⟦phone=(0161) 496 0852⟧ and prescriptions are on ⟦phone=0161 496 0853⟧. Write a short notice for the waiting-room screen.")
T("Tengo que llamar a la embajada en México, el número que me dieron es ⟦phone=+52 55 5555 0198⟧. ¿Qué documentos debería tener a mano para renovar el pasaporte?")
T("Our Mumbai partner's escalation contact is Rohit Desai, ⟦phone=+91 99302 41876⟧, ⟦email=rohit.desai@suryatech.in⟧. Write an intro email from me to him about the SLA review.")
T("Please format these numbers for our Irish mailing: Dublin office ⟦phone=+353 1 555 0140⟧, Cork warehouse ⟦phone=021 455 0188⟧. Use the national format for local recipients.")
T("Escalation: the on-call phone ⟦phone=+44 7700 900827⟧ went to voicemail during the outage. Draft a blameless note asking the team to check their rota notifications.")
T("Dana from Pinebrook Dental wants to move my cleaning to next Thursday; she asked me to text ⟦phone=415-555-0173⟧ to confirm. Write a short SMS accepting the 8:30 slot.")
T("Convert our Dutch support line ⟦phone=+31 20 555 0192⟧ and the Belgian one ⟦phone=+32 3 555 01 77⟧ into E.164 for the Twilio number pool config.")
T("The toll-free number on the packaging reads ⟦phone=1 (800) 555-0166⟧. Is that enough for the US FTC labelling rules, or do we need a postal address too?")
T("Gestalte bitte eine einheitliche E-Mail-Signatur für unser Team. Vorlage von Herrn Krüger: Zentrale ⟦phone=030 5557 8814⟧, Mo–Fr 8–17 Uhr, Firmensitz Berlin-Mitte.")
T("Translate this out-of-office into French: 'I'm away until 6 January. For urgent matters contact Élodie Martin at ⟦email=elodie.martin@ventoux-solar.fr⟧ or ⟦phone=+33 4 90 55 12 08⟧.'")
T("Cold outreach draft feedback please: 'Hi Ms Chen, I found your address (⟦email=grace.chen@lumenfold.com⟧) on your conference talk slides and wanted to share our observability tool…' Too pushy?")
T("Our status page notifications come from ⟦email=status@updates.semroute.dev⟧ but Gmail puts them in spam. Which DNS records (SPF, DKIM, DMARC) should I check first?")
T("""
    Write release notes from these commits:

    commit ⟦!sha1|⟧
    Author: Tomasz Zieliński <⟦email=tomasz.zielinski@proton.me⟧>
        fix(router): honour retry-after on 429

    commit ⟦!sha1|⟧
    Author: Ama Mensah <⟦email=ama.mensah+gh@hey.com⟧>
        feat(guard): configurable redaction marker
""")
T("""
    Sentry event payload, user context section. Is it OK that we send this?

    "user": {"id": "u_88120", "email": "⟦email=kwame.boateng@gmail.com⟧", "ip_address": "⟦ip=102.176.65.3⟧"},
    "request": {"url": "https://app.ledgerly.io/settings/billing", "method": "POST"}
""")
T("""
    Mixed support thread — summarise and list the actions for each team:

    Customer (⟦email=ines.carvalho@sapo.pt⟧): my refund went to the wrong account, it should go to ⟦iban|PT,plain⟧ not the old one.
    Agent: Noted. Can you confirm the last payment card used?
    Customer: ⟦card|visa,dash⟧. And please call me on ⟦phone=+351 93 555 0129⟧, not email.
""")
T("""
    Security review of this incident note — what's missing?

    At 03:14 UTC an attacker from ⟦ip=185.220.101.47⟧ used a leaked key (⟦secret|openai⟧) to send ~14k requests.
    The key owner, ⟦email=dev.temp@semroute.dev⟧, rotated it at 04:02. Customer impact: none known.
""")
T("""
    Clean up this OCR of a 1099-NEC before I import it:
    PAYER'S TIN 83-1927466   RECIPIENT'S TIN ⟦ssn|dash⟧
    RECIPIENT'S name: Yolanda Mbeki   Box 1 Nonemployee compensation $14,250.00
    Street: 1187 Larkspur Ct, Apt 4   City: Boise, ID 83709
""")
T("Mi esposo y yo vamos a declarar impuestos juntos. Su número de seguro social es ⟦ssn|dash⟧ y el mío ⟦ssn|dash⟧. ¿Nos conviene 'married filing jointly' si él trabajó solo seis meses?")
T("Unemployment portal locked me out after I typed my SSN ⟦ssn|space⟧ three times. The help line ⟦phone=(877) 555-0190⟧ is always busy. Write a short email to the state agency asking them to unlock it.")
T("""
    Audit this JSON export from our KYC vendor for fields we shouldn't be storing:

    {"applicant_id": "kyc_5541", "name": "Lorenzo Bianchi", "ssn": "⟦ssn|dash⟧", "phone": "⟦phone=+1 646 555 0124⟧", "email": "⟦email=lbianchi@me.com⟧", "risk_score": 0.12, "doc_type": "passport"}
""")

# ==================================================================================================
# HARD NEGATIVES / NEAR-MISSES — nothing sensitive under the policy
# ==================================================================================================

# --- card-like numbers ------------------------------------------------------------------------
T("A test card ⟦!badluhn|amex,space⟧ keeps failing client-side validation. Is the 4-6-5 grouping the problem or the digits themselves?")
T("Our internal wallet ids like ⟦!badiin|8,16,space⟧ are Luhn-valid by design, and the new DLP tool quarantines every export that contains them. How do I argue they are not card numbers?")
T("Our log scrubber rewrites PANs as ****-****-****-1234. Write a unit test asserting that no run of 13 to 19 digits survives scrubbing, including runs split by spaces or dashes.")
T("Our SIM ICCIDs look like 8931440400012345678 and the IMSI like 204043123456789. Write a parser that splits out the issuer part of each.")

# --- bank identifiers that are not IBANs ------------------------------------------------------
T("Which bank is ABA routing number 021000021, and do I use the same one for wires and ACH?")
T("Our payout screen masks IBANs as PL** **** **** **** **** **** 7711. Is keeping only the last four enough for users to tell their accounts apart, or should we show the bank name too?")
T("Bulk import log — row 14: iban=⟦!iban_badcheck|NO,plain⟧ error=CHECKSUM_MISMATCH. Write a friendly, non-technical message for the user who uploaded the file.")
T("Translate this API error into a short user-facing message in Polish: {\"field\": \"iban\", \"value\": \"⟦!iban_badlen|PL,plain⟧\", \"error\": \"LENGTH\", \"expected\": 28}")
T("Betala till bankgiro 5050-1055 med OCR-nummer 4471 2290 0183 — what's the difference between bankgiro and plusgiro, and which one does a Swedish invoice usually use?")
T("Irish supplier gave NSC 93-11-52 and account 44819210. How is that different from an IBAN, and can we still pay to it?")
T("Portuguese invoices use a NIB like 0035 0183 00012345678 93 — is it the IBAN without 'PT50', or a separate format?")
T("For our FAQ: in two sentences, why does a SEPA transfer need only the IBAN while a SWIFT transfer to the US needs a routing number and account number instead?")

# --- tax ids, national ids, company ids ---------------------------------------------------------
T("Explain the difference between a Spanish NIF like 12345678Z, an NIE like X1234567L and a CIF like B12345678 for a freelancer invoicing in Madrid.")
T("Is Steuernummer 21/815/08150 in the Bavarian format or the 13-digit federal format? Our accounting tool wants the latter.")
T("UK National Insurance numbers: is QQ 12 34 56 C the standard documentation example, and why can't a prefix start with D, F, I, Q, U or V?")
T("Form W-8BEN asks for a foreign TIN. Is my Canadian business number 875123456 RC0001 acceptable, or do I need an ITIN?")
T("Codice fiscale RSSMRA85T10A562S e partita IVA 01234567890: come verifico il carattere di controllo del codice fiscale in Python?")
T("Qual é a diferença entre o NIF 123456789 e o NISS 12345678901 em Portugal? Preciso dos dois para contratar um freelancer?")
T("Our LEI is 5493001KJTIIGC8Y1R12 and the DUNS is 15-048-3782. Which one does the EU supplier portal need?")
T("Payroll rejected a new hire's number ⟦!ssn_bad|area9xx,dash⟧ in the SSN field; she is a nonresident PhD student. Our company EIN is 84-3017562. Which field should hers go in, and what changes on her W-2?")
T("A data-quality job flagged these values in the ssn column as impossible: ⟦!ssn_bad|area000,dash⟧, ⟦!ssn_bad|group00,space⟧, ⟦!ssn_bad|serial0000,dash⟧, ⟦!ssn_bad|area666,space⟧. For each, which SSA rule does it break, and how did they get past the form?")
T("Our HR export must mask SSNs as xxx-xx-1234. Write a Postgres view that builds that mask from the last-four column without ever selecting the encrypted full value.")
T("""
    Write a JSON Schema for our applicant payload. SSN should be a string matching ^\\d{3}-\\d{2}-\\d{4}$ and phone should be E.164.
    Example shapes only: "ssn": "XXX-XX-XXXX", "phone": "+1XXXXXXXXXX".
""")

# --- phone-like numbers -------------------------------------------------------------------------
T("Invoice numbers in our AP system look like 312-4478-901 and 312-4479-022. Write a regex that matches them and doesn't match phone numbers.")
T("Our freedom-to-operate memo cites US 11,468,215 B2, EP 3 812 004 B1 and WO 2022/034567 A1 inconsistently. Rewrite the citations in one consistent style for the footnotes.")
T("Our support PIN is 4821 and the account number 00042177. Write a knowledge-base article explaining what each is used for.")
T("Auf der Stromrechnung stehen die Zählernummer 1ESY1160548761 und der Zählerstand 48.213,7 kWh. Wie berechne ich daraus den neuen monatlichen Abschlag bei 0,32 €/kWh?")
T("Mon contrat d'électricité porte la référence client 6 012 345 678 et le PDL 21 4567 8901 2345. Lequel dois-je donner au nouveau fournisseur pour la résiliation ?")

# --- dates, times, versions, quantities ---------------------------------------------------------
T("Why does Python's fromisoformat reject '2024-11-03T14:22:05.123456789Z' but accept '2024-11-03T14:22:05.123+00:00' on 3.11?")
T("Renovate wants to bump axios from 1.6.8 to 1.7.7 and typescript from 5.4.5 to 5.6.3. Which of these is risky for a Node 18 project?")
T("What's the difference between `cpu: 250m` and `cpu: 0.25`, and is `memory: 1G` the same as `memory: 1Gi`? Our requests are 750m/1536Mi and limits 2/3Gi.")
T("Helm chart 4.11.2 ships app version 1.29.0-alpine, but the changelog talks about 0.14.3-rc.2 of the sidecar. Which version does `helm list` show?")
T("Our Grafana panel uses histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{le=\"0.25\"}[5m])) by (le)). Why is p99 stuck at 0.25?")

# --- security identifiers, hashes, digests -------------------------------------------------------
T("Our admission controller now rejects tag-only images. Is `image: registry.k8s.io/ingress-nginx/controller:v1.11.3@sha256:⟦!sha256|⟧` acceptable, or must the tag be removed when a digest is present?")
T("Does upgrading to OpenSSL 3.0.15 fix CVE-2024-5535 and CVE-2024-6119? Our scanner still flags CVE-2023-5678 afterwards.")
T("Log4Shell (CVE-2021-44228) vs Spring4Shell (CVE-2022-22965) — which one can affect a Spring Boot 3.2 app on Java 17?")
T("Is ⟦!hex|32⟧ an MD5 or an NTLM hash? And which hashcat mode handles sha512crypt ($6$) hashes?")
T("Our idempotency keys are UUIDv4 like ⟦!uuid|⟧, but Postgres says 'invalid input syntax for type uuid' for ⟦!hex|32⟧. Why?")
T("Compare these two bcrypt hashes from the users table — do they use the same cost factor? $2b$12$⟦!alnum|53⟧ and $2b$10$⟦!alnum|53⟧")
T("The release page lists SHA-512 ⟦!hex|128⟧ for the installer. How do I verify it on Windows without installing anything?")

# --- network look-alikes ------------------------------------------------------------------------
T("Customers upload allow-lists as CSV and some rows contain 10.0.0.256 or 172.16.300.1. Write the error message our admin UI should show for those rows, plus a one-line hint.")
T("The Ansible inventory line `edge01 ansible_host=2001:db8::85a3::7334` makes the play fail with 'invalid address'. What's wrong with the host entry?")
T("Why does resolving db-primary.svc.cluster.local work from one pod while plain db-primary fails from another namespace?")
T("Which of ports 5432, 6379, 9092 and 27017 should ever be exposed outside the VPC, if any?")
T("Convert the DN CN=svc-backup,OU=Service Accounts,DC=corp,DC=example,DC=com into a UPN for the new backup job.")
T("Cisco IOS 15.2(7)E8 vs 17.9.4a — which train should our access switches run?")

# --- email look-alikes --------------------------------------------------------------------------
T("@Transactional on a private method does nothing in Spring. Also, why does @Async need @EnableAsync on a config class?")
T("Postfix bounces mail to root@localhost and admin@intranet with 'domain not found'. How do I make local delivery work?")
T("The reset page says a link was sent to j***@gmail.com and r*****@company.io. How do sites decide how many characters to hide?")
T("Our SMS 2FA screen shows '+1 (•••) •••-4821'. Write accessible screen-reader text for that masked number.")

# --- secret look-alikes -------------------------------------------------------------------------
T("Our Helm values.yaml has `openaiApiKey: \"sk-REPLACE_ME\"` and `anthropicApiKey: \"\"`. How do I make the chart fail fast if they are not overridden?")
T("This JWT header decodes to {\"alg\":\"none\"}: eyJhbGciOiJub25lIn0 — why is alg=none dangerous, and how do libraries guard against it?")
T("""
    Can our internal CA sign this CSR, or is the key size too small?
    ⟦!pem_csr|⟧
""")
T("""
    The partner portal rejected our upload with "expected SubjectPublicKeyInfo". We sent the block below; which openssl command converts it?
    ⟦!pem_pub_rsa|⟧
""")
T("gitleaks fails the pre-commit hook on docs/setup.md because it contains `GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxx`. How do I allowlist that one line without disabling the rule?")
T("Our PEM linter flags files whose first line is -----BEGIN OPENSSH PRIVATE KEY----- as 'unsupported'. What ssh-keygen flag converts them to PEM, and does that change the key itself?")

# --- coordinates, money, misc -------------------------------------------------------------------
T("This GeoJSON delivery zone has corners [-0.1278, 51.5074], [-0.0877, 51.5074], [-0.0877, 51.4934] and [-0.1278, 51.4934]. Compute its area in km² and tell me if the ring orientation is right.")
T("Convert ¥1,250,000, €3.480,75 and CHF 12'400.50 into USD at roughly today's rates and show the working.")
T("The drone logged 40°26′46″N 79°58′56″W at 120.5 m altitude. Convert to decimal degrees for our map.")
T("ISIN US0378331005 and CUSIP 037833100 refer to the same security — explain how each check digit is computed.")
T("A used-car listing shows VIN 1HGCM82633A004352. How do I decode the model year and plant from it?")
T("Q3 revenue was 4,512,330.18 and Q2 3,998,104.62. What's the quarter-on-quarter growth, and how should I round it for the board deck?")
T("Un cliente mexicano me mandó su CLABE en lugar de un IBAN. ¿Sirve para una transferencia desde España o necesito otro dato? Explícalo sin usar números reales.")
T("Warum zeigt unser Kassensystem Beträge wie 1.234,56 € und 1,234.56 € gemischt an? Wie stelle ich das Gebietsschema ein?")
T("Explica como funciona a validação de um cartão de crédito com o algoritmo de Luhn, passo a passo, sem usar números reais.")
T("Rédige une politique interne courte sur le partage des coordonnées bancaires par e-mail, sans exemples de numéros.")
T("""
    kubectl top shows:
    NAME                       CPU(cores)   MEMORY(bytes)
    router-7d9c8b6f4-xk2lq     412m         1012Mi
    router-7d9c8b6f4-p9v7d     388m         987Mi
    Should I raise the memory limit from 1Gi or look for a leak?
""")

T("""
    HPA never scales past 2 replicas. Spec excerpt:
      minReplicas: 2
      maxReplicas: 12
      metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}]
      resources: {requests: {cpu: 300m, memory: 384Mi}, limits: {memory: 768Mi}}
    What am I missing?
""")
T("Dependabot opened GHSA-9wv6-86v2-598j for path-to-regexp (CVE-2024-45296), fixed in 0.1.10 and 8.0.0. We're on 0.1.7 via express 4.19.2 — is bumping express to 4.21.1 enough?")
T("Our CDN snippet uses integrity=\"sha384-⟦!b64|64⟧\" crossorigin=\"anonymous\" and Firefox blocks it. How do I regenerate the SRI hash for the new bundle?")
T("S3 keys look like uploads/2024/11/⟦!uuid|⟧/invoice.pdf. Write a lifecycle rule that expires everything under uploads/ after 400 days except objects tagged legal-hold=true.")
T("Kafka consumer lag: partition 3 at offset 18446744, committed 18440012, last record timestamp 2024-11-14T02:11:09.004+01:00. How far behind are we in minutes if we process 120 msgs/s?")
T("Cargo.toml pins tokio = \"1.41.1\", axum = \"0.7.9\" and tower-http = { version = \"0.6.2\", features = [\"trace\"] }. Is axum 0.7 compatible with tower-http 0.6?")
T("The courier's SMS says 'Your parcel for 07*** ***512 is out for delivery'. Is that masking enough to stop someone reusing my number?")
T("Accounts payable: supplier invoice no. 0412-5578-3390 for $12,406.18 was paid twice (check 104417 and ACH trace 091000019876543). Draft the recovery letter.")

# ==================================================================================================
# Build and validate
# ==================================================================================================

# Unlabelled strings that a scanner for the listed secret formats may match but the policy excludes.
ALLOWED_SECRET_LOOKALIKES = set()

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
    # compact IBANs embedded in longer tokens (e.g. inside XML tags)
    for m in re.finditer(r"[A-Z]{2}\d{2}[A-Z0-9]{8,30}", text):
        cc = m.group()[:2]
        if cc in IBAN_LEN:
            cand = m.group()[:IBAN_LEN[cc]]
            if len(cand) == IBAN_LEN[cc] and iban_mod97(cand) == 1 and not overlaps(spans, m.start(), m.start() + len(cand)):
                problems.append(("iban", cand))
    for r in SECRET_RES:
        for m in r.finditer(text):
            if not overlaps(spans, m.start(), m.end()) and m.group() not in ALLOWED_SECRET_LOOKALIKES:
                problems.append(("secret", m.group()[:40]))
    return problems


def word_shingles(text, n=6):
    words = re.findall(r"[a-zà-ÿ']+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def dev_overlap(rows):
    """Independence check against the development set: shared 6-word shingles and reused values."""
    if not os.path.exists(DEV):
        return [], []
    with open(DEV, encoding="utf-8") as f:
        dev = [json.loads(line) for line in f]
    dev_sh = set()
    for r in dev:
        dev_sh |= word_shingles(r["text"])
    dev_vals = {fnd["value"] for r in dev for fnd in r["findings"]}
    shared_text, shared_vals = [], []
    for r in rows:
        common = word_shingles(r["text"]) & dev_sh
        if common:
            shared_text.append((r["id"], sorted(common)))
        for fnd in r["findings"]:
            if fnd["value"] in dev_vals:
                shared_vals.append((r["id"], fnd["value"]))
    return shared_text, shared_vals


def build():
    rows, errors, review = [], [], []
    seen_text = set()
    for n, template in enumerate(PROMPTS, 1):
        rid = f"h{n:03d}"
        text, found = render(template)
        if text in seen_text:
            errors.append(f"{rid}: duplicate prompt")
        seen_text.add(text)
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
    shared_text, shared_vals = dev_overlap(rows)
    print(f"prompts sharing a 6-word run with labelled.jsonl: {len(shared_text)}")
    print(f"finding values also present in labelled.jsonl: {len(shared_vals)}")
    if "--review" in sys.argv:
        print("\nphone-like strings outside labelled spans (check they are not phone numbers):")
        print("\n".join(review))
        print("\nshared 6-word runs with labelled.jsonl:")
        for rid, common in shared_text:
            print(f"{rid}: {common}")
        print("\nvalues shared with labelled.jsonl:")
        for rid, v in shared_vals:
            print(f"{rid}: {v!r}")


if __name__ == "__main__":
    main()

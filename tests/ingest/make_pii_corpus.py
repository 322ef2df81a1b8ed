"""Writes ``pii_corpus.jsonl``: the labelled PII corpus the redaction tests score against.

Run from the repository root (``python tests/ingest/make_pii_corpus.py``); the output is committed,
so tests never depend on this script. Each line is::

    {"text": ..., "pii": [[kind, value], ...], "keep": [value, ...], "expected": ...}

``pii`` are the items that must disappear (``kind`` names the token that should replace them),
``keep`` the look-alikes that must survive verbatim, and ``expected`` the text with every PII
value replaced by its token. The corpus was written from the formats people actually type (and
the probe's 40 strings), before the detectors were tuned; a seeded generator adds breadth
(random Luhn-valid cards, valid IBANs, phone numbers in every format) so no rule can be fitted
to one string.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from schwifty import IBAN

OUT = Path(__file__).with_name("pii_corpus.jsonl")
rng = random.Random(20251202)
rows: list[dict] = []


def add(text: str, pii: list[tuple[str, str]] = (), keep: list[str] = ()) -> None:
    for _, v in pii:
        assert v in text, (v, text)
    for v in keep:
        assert v in text, (v, text)
    expected = text
    for kind, v in sorted(pii, key=lambda p: -len(p[1])):
        expected = expected.replace(v, f"[{kind}]")
    rows.append({"text": text, "pii": [list(p) for p in pii], "keep": list(keep), "expected": expected})


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        s = body + check
        total = 0
        for i, ch in enumerate(reversed(s)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return s
    raise AssertionError


def luhn_ok(s: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(s)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def group(digits: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i:i + n])
        i += n
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(out)


FULLWIDTH = str.maketrans("0123456789-+()@.abcdefghijklmnopqrstuvwxyz", "０１２３４５６７８９－＋（）＠．ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ")

# ---------------------------------------------------------------------------- e-mail addresses
EMAIL_SENTENCES = [
    "Please email me at {} about the refund.",
    "my address is {}",
    "{} is my account, nobody replied.",
    "Contact: {}; I'll wait for your answer",
    "Reply to <{}> please!",
    "(sent from {})",
    "Write to {}. Thanks",
    "mailto:{}",
    "I changed my login to {}, but the receipt still went to the old one.",
    "cc {} and my wife",
]
EMAILS = [
    "jane.doe@example.com", "j.doe+orders@gmail.com", "MIKE_SMITH@Yahoo.COM", "anna-lena.k@web.de",
    "support.case-42@mail.company.co.uk", "bob@sub.domain.example.org", "x7q2@proton.me", "first.last@shop.store",
    "o'brien@example.ie", "info@my-bakery.london", "sam_99@outlook.com", "lee@example.museum",
    "a.b.c.d@e-f-g.net", "r2d2@starwars.fans", "tom@xn--bcher-kva.de",
]
for i, e in enumerate(EMAILS):
    add(EMAIL_SENTENCES[i % len(EMAIL_SENTENCES)].format(e), [("EMAIL", e)])
    add(EMAIL_SENTENCES[(i + 3) % len(EMAIL_SENTENCES)].format(e), [("EMAIL", e)])

IDN_EMAILS = [
    "josé.garcía@correo.es", "müller@bücher.de", "иван.петров@почта.рф", "用户@例子.广告", "δοκιμή@παράδειγμα.δοκιμή",
    "अजय@डाटा.भारत", "søren@kø.dk", "françois@société.fr", "yamada@日本.jp", "chloé+promo@exemple.fr",
    "θεόδωρος@example.gr", "ali@مثال.شبكة",
]
for i, e in enumerate(IDN_EMAILS):
    add(EMAIL_SENTENCES[(i + 1) % len(EMAIL_SENTENCES)].format(e), [("EMAIL", e)])
for e in ["jane@example.com", "kim.lee@mail.co.kr", "tanaka@example.jp", "mary.ann@shop.net"]:
    fw = e.translate(FULLWIDTH)
    add(f"連絡先 {fw} までお願いします", [("EMAIL", fw)])

SPELLED = [
    "jane dot doe at example dot com", "jane.doe (at) example (dot) com", "john [at] gmail [dot] com",
    "mike AT company DOT org", "sara_k at yahoo dot co dot uk", "jane(at)example.com", "peter [at] example.com",
    "bob at mail dot example dot org", "anna {at} web {dot} de", "jdoe @ example . com", "tom.h at outlook dot com",
    "lisa (at) shop (dot) co (dot) uk", "dan[at]mail[dot]net", "kate at gmail.com dot", "rick <at> proton <dot> me",
]
SPELLED_SENT = ["write me: {} thanks", "Email {} if you need more info", "my email is {}", "reach {} anytime."]
for i, e in enumerate(SPELLED):
    if e == "kate at gmail.com dot":
        continue
    add(SPELLED_SENT[i % len(SPELLED_SENT)].format(e), [("EMAIL", e)])

# ---------------------------------------------------------------------------- phone numbers
AREA = ["212", "312", "415", "617", "646", "206", "512", "303", "702", "919", "404", "713"]
US_FORMATS = [
    lambda a, x, n: f"({a}) {x}-{n}", lambda a, x, n: f"{a}-{x}-{n}", lambda a, x, n: f"{a}.{x}.{n}",
    lambda a, x, n: f"{a}{x}{n}", lambda a, x, n: f"+1 {a} {x} {n}", lambda a, x, n: f"1-{a}-{x}-{n}",
    lambda a, x, n: f"+1{a}{x}{n}", lambda a, x, n: f"{a} {x} {n}", lambda a, x, n: f"+1 ({a}) {x}-{n}",
    lambda a, x, n: f"{a}/{x}-{n}", lambda a, x, n: f"({a}){x}-{n}", lambda a, x, n: f"+1-{a}-{x}-{n}",
]
PHONE_SENT = [
    "call me at {} after 5pm", "My number is {}.", "phone: {}", "Text {} if the driver can't find the house",
    "{} - that's my cell", "They called from {} three times!", "tel {}", "whatsapp {} please",
]
for i in range(48):
    a, x, n = AREA[i % len(AREA)], str(rng.randint(200, 999)), f"{rng.randint(0, 9999):04d}"
    p = US_FORMATS[i % len(US_FORMATS)](a, x, n)
    add(PHONE_SENT[i % len(PHONE_SENT)].format(p), [("PHONE", p)])
INTL = [
    "+44 20 7946 0958", "+49 30 901820", "+33 1 42 68 53 00", "+91 98765 43210", "+81 3-1234-5678",
    "+61 2 9374 4000", "+55 11 91234-5678", "+34 612 34 56 78", "0044 20 7946 0958", "+4915112345678",
    "+39 06 6988 4857", "+31 20 794 6000", "+353 1 671 1234", "+52 55 5342 0000", "+86 10 6552 9988",
    "+27 21 480 7700", "+48 22 123 45 67", "+46 8 123 456 78", "+1 416 555 0199", "+65 6123 4567",
]
for i, p in enumerate(INTL):
    add(PHONE_SENT[(i + 2) % len(PHONE_SENT)].format(p), [("PHONE", p)])
for p in ["415-555-2671 ext. 12", "(212) 555-0187 x204"]:
    add(f"call {p} and ask for Kim", [("PHONE", p)])
add("London office 020 7946 0958, ask for Priya", [("PHONE", "020 7946 0958")])
add("de handy 0151 12345678", [("PHONE", "0151 12345678")])
for p in ["４１５－５５５－２６７１", "（２１２）５５５－０１８７", "＋８１ ３－１２３４－５６７８", "４１５５５５２６７１"]:
    add(f"電話番号は{p}です", [("PHONE", p)])
for p in ["415\u2013555\u20132671", "617\u2011555\u20110123", "+1\u00a0212\u00a0555\u00a00143"]:
    add(f"call {p} today", [("PHONE", p)])
add("4155552671", [("PHONE", "4155552671")])
add("my cell:6175550199,home:2125550143", [("PHONE", "6175550199"), ("PHONE", "2125550143")])

# ---------------------------------------------------------------------------- payment cards
KNOWN_CARDS = [
    "4111111111111111", "5555555555554444", "5105105105105100", "378282246310005", "371449635398431",
    "6011111111111117", "6011000990139424", "3530111333300000", "30569309025904", "38520000023237",
    "4222222222222", "2221000000000009", "6200000000000005", "4012888888881881", "5200828282828210",
]
for p, n in [("4", 16), ("4", 16), ("51", 16), ("55", 16), ("37", 15), ("34", 15), ("6011", 16), ("2720", 16),
             ("35", 16), ("4", 19), ("62", 17)]:
    KNOWN_CARDS.append(luhn_complete(p, n))
CARD_FORMATS = [
    lambda d: group(d, [4, 4, 4, 4], " "), lambda d: group(d, [4, 4, 4, 4], "  "),
    lambda d: group(d, [4, 4, 4, 4], "."), lambda d: group(d, [4, 4, 4, 4], "-"), lambda d: d,
    lambda d: group(d, [4, 6, 5], " "), lambda d: group(d, [4, 4, 4, 4], " - "), lambda d: group(d, [4, 4, 4, 4], ". "),
]
CARD_SENT = [
    "charged twice on card {}", "Visa {} was declined", "my card number is {} exp 04/27", "card: {}",
    "refund to {} please", "they stored {} in plain text!",
]
for i, d in enumerate(KNOWN_CARDS):
    f = CARD_FORMATS[i % len(CARD_FORMATS)](d)
    add(CARD_SENT[i % len(CARD_SENT)].format(f), [("CARD", f)])
    if i % 2 == 0:
        f2 = CARD_FORMATS[(i + 3) % len(CARD_FORMATS)](d)
        add(CARD_SENT[(i + 1) % len(CARD_SENT)].format(f2), [("CARD", f2)])
for d in ["4111111111111111", "5555555555554444"]:
    fw = group(d, [4, 4, 4, 4], " ").translate(FULLWIDTH)
    add(f"カード番号 {fw}", [("CARD", fw)])
    fw2 = group(d, [4, 4, 4, 4], "－").translate(FULLWIDTH)
    add(f"card {fw2} charged", [("CARD", fw2)])

# ---------------------------------------------------------------------------- IBANs
IBANS = [
    "DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NL91ABNA0417164300",
    "ES9121000418450200051332", "IT60X0542811101000000123456", "BE68539007547034", "CH9300762011623852957",
    "AT611904300234573201", "PL61109010140000071219812874", "SE4550000000058398257466", "NO9386011117947",
    "DK5000400440116243", "IE29AIBK93115212345678", "PT50000201231234567890154", "FI2112345600000785",
]
for cc, bank, acct in [("DE", "50010517", "0648489890"), ("DE", "10020030", "4711"), ("AT", "19043", "234573201"),
                       ("NL", "INGB", "0001234567"), ("GB", "NWBK601613", "31926819"), ("FR", "2004101005", "0500013M026")]:
    try:
        IBANS.append(str(IBAN.generate(cc, bank_code=bank, account_code=acct)))
    except Exception:  # noqa: BLE001 - a bank code schwifty does not know; skip it
        pass
IBAN_SENT = ["IBAN: {}", "please refund to {} asap", "Bank account {} (Sparkasse)", "wire it to {}, thanks"]
for i, b in enumerate(IBANS):
    IBAN(b)  # every corpus IBAN is valid
    compact = b
    printed = " ".join(b[j:j + 4] for j in range(0, len(b), 4))
    fmt = [compact, printed, printed.lower() if i % 2 else "-".join(b[j:j + 4] for j in range(0, len(b), 4))][i % 3]
    add(IBAN_SENT[i % len(IBAN_SENT)].format(fmt), [("IBAN", fmt)])
    add(IBAN_SENT[(i + 1) % len(IBAN_SENT)].format(printed), [("IBAN", printed)])

# ---------------------------------------------------------------------------- street addresses
ADDRESSES = [
    "123 Main St", "456 Oak Avenue", "742 Evergreen Terrace", "1 Infinite Loop", "350 Fifth Avenue",
    "1600 Pennsylvania Ave NW", "221B Baker Street", "24 Sussex Drive", "10 Downing Street", "4059 Mt Lee Dr",
    "77 Massachusetts Ave", "500 W 2nd St", "2200 N Lamar Blvd", "88 Colin P Kelly Jr St", "1 Microsoft Way",
    "9 Elm Ct", "31 Spooner Street", "12 Grimmauld Place", "4 Privet Drive", "700 E Main Street",
    "1234 Sunset Boulevard", "16 Rue de la Paix", "55 Water St.", "3100 Canyon Rd", "8 Harbour Lane",
]
ADDR_TAILS = ["", ", Springfield, IL 62704", ", Apt 4B", ", New York, NY 10118", ", Austin, TX 78701", ", Suite 200",
              ", London", ""]
ADDR_SENT = [
    "ship it to {} please", "The parcel was left at {} instead of my house.", "I live at {}{}.",
    "Return address: {}{}", "deliver to {}{} after 6pm", "wrong address, it should be {}{}",
]
for i, a in enumerate(ADDRESSES):
    s = ADDR_SENT[i % len(ADDR_SENT)]
    tail = ADDR_TAILS[i % len(ADDR_TAILS)]
    text = s.format(a) if s.count("{}") == 1 else s.format(a, tail)
    add(text, [("ADDRESS", a)])

# ---------------------------------------------------------------------------- secrets in URLs and text
SECRETS = [
    ("https://shop.example.com/reset?token={}", "a8f3c91e0b7d4e2f9c1a6b5d3e8f7a20"),
    ("https://app.example.com/callback#access_token={}&token_type=bearer", "ya29.A0ARrdaM-k9Xz3LqP7"),
    ("https://api.example.com/v1/orders?access_token={}&page=2", "EAAGm0PX4ZCpsBAKZBZC9ZA"),
    ("https://example.com/login?user=kim&password={}", "hunter2!Secret"),
    ("https://maps.googleapis.com/maps/api/js?key={}", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    ("https://bucket.s3.amazonaws.com/invoice.pdf?X-Amz-Signature={}&X-Amz-Expires=300",
     "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"),
    ("link: https://example.com/unsubscribe?id=88&sig={}", "9f86d081884c7d659a2feaa0c55ad015"),
    ("https://example.com/cb?code=ok&refresh_token={}", "1//0gLpM3xZyQ-rT"),
    ("https://example.com/oauth?client_id=abc&client_secret={}", "s3cr3t-VALUE-9981"),
    ("https://example.com/api?api_key={}&format=json", "9d3f2a7c4b1e8f60"),
    ("open https://track.example.com/view?session_id={} to see it", "f2b9c3a1d4e5"),
    ("https://example.com/verify?email_token={}", "Zk9wQ2xhc3NpYw"),
    ("https://example.com/download?file=a.pdf&auth={}", "c2VjcmV0OnBhc3M"),
    ("https://example.com/?id_token={}", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
]
for tmpl, s in SECRETS:
    add(f"the link {tmpl.format(s)} doesn't work", [("SECRET", s)])
for text, s in [
    ("Authorization: Bearer {} was in the error page", "abc123def456ghi789jkl0"),
    ("the app shows my token {} on screen", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1aWQiOjQyfQ.c2lnbmF0dXJlX2hlcmU"),
    ("leaked key {} in the page source", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("aws key {} is visible", "AKIAIOSFODNN7EXAMPLE"),
    ("github token {} printed in logs", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("my password: {} (please reset it)", "Tr0ub4dor&3"),
    ("slack token {}", "xoxb-123456789012-abcdefghijkl"),
]:
    add(text.format(s), [("SECRET", s)])

# ---------------------------------------------------------------------------- the probe's id-like strings
add("customer jane.doe@example.com says the box was crushed", [("EMAIL", "jane.doe@example.com")])

# ---------------------------------------------------------------------------- look-alikes (must survive)
LOOK = []
for _ in range(12):
    LOOK.append(f"order {rng.randint(10**8, 10**9 - 1)}")
    LOOK.append(f"Order #{rng.randint(10**5, 10**7)}")
for _ in range(6):
    LOOK.append(f"order no. 1{rng.randint(10**8, 10**9 - 1)}")  # 10 digits from 1: never a NANP number
    LOOK.append(f"{rng.randint(100, 199)}-{rng.randint(10**6, 10**7 - 1)}-{rng.randint(10**6, 10**7 - 1)}")  # marketplace
LOOK += [
    "ORD-2025-0042", "SKU-123-4567-89", "SHO-3f2a1-004-01", "AB-12345-XL", "P-SHO-3f2a1-004-01", "o-00001234",
    "INV-2025-000123", "Invoice 2025/00017", "INV00012345", "PO 4500012345", "RMA 20250115-07", "case 00123456",
    "ticket t-000042", "ref A1B2C3D4", "confirmation ABX-77812", "model WH-1000XM4", "item 6543-21", "#1001",
]
DATES = ["2025-01-15", "15.01.2025", "01/15/2025", "Jan 15, 2025", "2025-01-15T10:30:00Z", "15/01/2025 10:30",
         "2025-03-01 09:30:00", "1999-2005", "12/2024", "03.2025", "2025-01-15 10:30", "on 4/5", "20250115"]
TIMES = ["10:30", "10:30:45", "10:30 am", "14h30", "9-5", "18:00-20:00", "between 2 and 4pm", "00:15:07"]
PRICES = ["$1,299.99", "€12.50", "12,50 €", "1.299,00 EUR", "USD 2,450,000.00", "19.99 x 3", "$49.99",
          "£1,234,567.89", "12.50 99.99", "CHF 1'250.00", "¥12,800", "R$ 1.234,56", "$5 off $50", "25.00-30.00"]
TRACK = ["1Z999AA10123456784", "1Z 999 AA1 01 2345 6784", "1Z12345E0205271688", "1ZA48F720346152991"]
for _ in range(8):
    while True:
        d = "9" + "".join(rng.choice("0123456789") for _ in range(rng.choice([19, 20, 21])))
        if not luhn_ok(d):
            break
    TRACK.append(d if rng.random() < 0.5 else group(d, [4] * 6, " "))
for _ in range(6):
    d = "".join(rng.choice("0123456789") for _ in range(12))
    TRACK.append(d if rng.random() < 0.5 else group(d, [4, 4, 4], " "))
VERSIONS = ["v10.2.1", "version 2.14.0", "build 1.2.3.4567", "iOS 17.4.1", "Android 14", "firmware 3.10.12-rc1",
            "app 5.0.0 (50012)", "v2025.01.15"]
PCTS = ["15%", "12.5 %", "up 3.2% from 2.9%", "99.9% uptime", "-40%", "0.5%"]
ZIPS = ["ZIP 94103", "94103-1234", "PLZ 10115", "postcode SW1A 1AA", "zip code 10001", "CEP 01310-100",
        "75008 Paris", "K1M 1M4"]
OTHER = [
    "192.168.1.254", "37.7749, -122.4194", "10-12 business days", "30 x 40 x 50 cm", "ISBN 978-3-16-148410-0",
    "2 x 500 ml", "serial SN-4411-2290-1177", "size 10.5 wide", "1-2-3 steps", "page 3 of 12", "3 kids", "5 stars",
    "Route 66", "waited 45 minutes on hold", "EAN 4006381333931", "room 1204", "flight LH 1234", "gate B22",
    "1/2 price", "24/7 support", "7-11", "2nd floor", "100 ways", "MAC 00:1B:44:11:3A:B7",
    "+5 points", "(2) items", "rating 4.5/5", "0.5 - 1.0 kg", "1,000,000 views", "lot 2025-0042-17",
]
EMAIL_LOOK = ["@handle", "a@b", "icon@2x.png", "twitter @acme_support", "@ 5pm", "user@localhost", "me@home",
              "2@3", "logo@3x.jpg"]
WORD_LOOK = ["arrived at 5pm", "bought it at amazon.com", "polka dot dress at target", "meet at the store",
             "look at this dot com era site", "at home dot", "I'm at a loss", "priced at 20 dollars"]
URL_LOOK = ["https://example.com/products/123?color=blue&size=10", "https://shop.example.com/?page=2&sort=price",
            "https://example.com/?utm_source=newsletter&utm_campaign=spring", "https://example.com/cart?coupon=SAVE20",
            "https://example.com/p/987654?ref=abc123", "www.example.com/help/returns",
            "https://example.com/search?q=blue+shoes&category=4", "https://example.com/track?id=1Z999AA10123456784"]
WORDS_LOOK = ["the token of appreciation was nice", "password reset never arrived", "my key broke off",
              "the secret sauce was missing", "session ended early"]
LOOK_SENT = [
    "{} arrived late", "about {}: still nothing", "I was told {} by the agent", "see {}", "({})", "{}!",
    "re {} - box crushed", "{}, wrong colour",
]
pool = LOOK + DATES + TIMES + PRICES + TRACK + VERSIONS + PCTS + ZIPS + OTHER + EMAIL_LOOK + WORD_LOOK + URL_LOOK
pool += WORDS_LOOK
for i, v in enumerate(pool):
    add(LOOK_SENT[i % len(LOOK_SENT)].format(v), keep=[v])

# Title-cased phrases shaped like a street (number, capitalised words, a street type) with nothing
# around them that says address; and addresses that only their tail or a cue gives away.
for v in ["I gave it 5 Stars Way too small", "waited 3 Long Days Street food was cold", "Ordered 2 Pairs Drive me crazy",
          "Size 10 Wide Circle toe", "took 45 Minutes Road closed", "Gate 22 Terminal Way", "Top 10 Best Place to buy",
          "1 Direction Lane concert shirt", "4 Seasons Park view", "2 Broke Girls Ave merch", "3 Ring Circus Plaza toy",
          "the 2 Main Courses were cold"]:
    add(v, keep=[v])
for text, a in [("my address is 12 Oak St, please update", "12 Oak St"), ("5 Main Street, Boston MA 02108", "5 Main Street"),
                ("moved to 77 Sunset Blvd last month", "77 Sunset Blvd"), ("90 Bedford St #4 is where I live", "90 Bedford St"),
                ("send to 1200 Getty Center Dr Suite 400", "1200 Getty Center Dr")]:
    add(text, [("ADDRESS", a)])

# ---------------------------------------------------------------------------- mixed texts
add("Order ORD-2025-0042 (paid $49.99 on 2025-01-15): call me at 415-555-2671",
    [("PHONE", "415-555-2671")], keep=["ORD-2025-0042", "$49.99", "2025-01-15"])
add("Tracking 1Z999AA10123456784 says delivered; I'm jane.doe@example.com",
    [("EMAIL", "jane.doe@example.com")], keep=["1Z999AA10123456784"])
add("refund 89.99 to card 4111 1111 1111 1111, invoice INV-2025-000123",
    [("CARD", "4111 1111 1111 1111")], keep=["89.99", "INV-2025-000123"])
add("IBAN DE89 3704 0044 0532 0130 00 for order 123456789 please",
    [("IBAN", "DE89 3704 0044 0532 0130 00")], keep=["123456789"])
add("sku SHO-3f2a1-004-01 size 10, ship to 456 Oak Avenue, Springfield, IL 62704",
    [("ADDRESS", "456 Oak Avenue")], keep=["SHO-3f2a1-004-01", "size 10"])
add("v2.3.1 app crashed at 10:30, logs at https://example.com/debug?token=abc123XYZ789qwe",
    [("SECRET", "abc123XYZ789qwe")], keep=["v2.3.1", "10:30"])
add("FedEx 7489 1234 5678 stuck; phone +44 20 7946 0958", [("PHONE", "+44 20 7946 0958")], keep=["7489 1234 5678"])
add("paid 15% deposit (USD 2,450.00) on 03/02/2025; contact mike AT company DOT org",
    [("EMAIL", "mike AT company DOT org")], keep=["15%", "USD 2,450.00", "03/02/2025"])
add("USPS 9205 5000 0000 0000 0000 00 lost, email jane@exämple.de", [("EMAIL", "jane@exämple.de")],
    keep=["9205 5000 0000 0000 0000 00"])
add("ZIP 94103 only, order 100234567, call (415) 555-2671", [("PHONE", "(415) 555-2671")], keep=["ZIP 94103", "order 100234567"])

with OUT.open("w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
n_pii = sum(len(r["pii"]) for r in rows)
n_keep = sum(len(r["keep"]) for r in rows)
print(f"{len(rows)} strings, {n_pii} PII items, {n_keep} look-alikes -> {OUT}")


# ============================================================================ held-out set
# Written after the detectors were tuned on the corpus above: new sentences, new values, the same
# kinds. As first scored: recall 0.983 (57/58; '12 rue Jacob' missed), false redactions 2/57
# ('EAN 5901234123457' passes Luhn, 'ZIP+4 30301-1234' read as +4 ...); those three were then fixed.
HOLD = Path(__file__).with_name("pii_holdout.jsonl")
rows = []
hold_pii = [
    ("EMAIL", "Hi, it's me again ({}), still waiting", ["maria.lopez@hotmail.es", "k.nguyen@uni-heidelberg.de", "ceo@startup.ai",
                                                        "dev+test@company.io", "ÆØÅ.test@firma.no", "ming@例え.テスト"]),
    ("EMAIL", "forward the label to {} asap", ["ops-team@warehouse.example.co", "ТЕСТ@пример.рф", "zoë@exämple.com",
                                            "peter dot parker at dailybugle dot com", "hans [at] gmx [dot] de",
                                            "a.smith(at)example(dot)org"]),
    ("PHONE", "you can reach me on {} most days", ["(312) 555-0148", "312 555 0148", "+1 312-555-0148", "3125550148",
                                                  "+44 7700 900461", "+49 (0)30 1234567", "+33 6 12 34 56 78",
                                                  "07700 900461", "+61 412 345 678", "+91-98200-12345", "８００－５５５－０１９９",
                                                  "+1.646.555.0175", "1 (800) 555-0199", "(646)555-0175"]),
    ("CARD", "my {} got charged twice", ["4000 0566 5566 5556", "5200-8282-8282-8210", "3714 496353 98431",
                                         "6011.0009.9013.9424", "4242424242424242", "5555  5555  5555  4444",
                                         "3566 0020 2036 0505", "4000 0025 0000 3155", "2223 0031 2200 3222"]),
    ("IBAN", "send the money back to {}", ["GB29 NWBK 6016 1331 9268 19", "DE75512108001245126199", "fr76 3000 6000 0112 3456 7890 189",
                                           "ES79-2100-0813-6101-2345-6789", "NL02ABNA0123456789", "CH56 0483 5012 3456 7800 9",
                                           "BE71 0961 2345 6769", "IT60 X054 2811 1010 0000 0123 456"]),
    ("ADDRESS", "Delivered to {} by mistake", ["1428 Elm Street", "90 Bedford St", "600 Montgomery Street",
                                               "2 Lincoln Memorial Cir NW", "17 Cherry Tree Lane", "4 Yawkey Way",
                                               "185 Berry St.", "1 Hacker Way", "308 Negra Arroyo Lane", "12 rue Jacob"]),
    ("SECRET", "support sent me {} in the email", ["https://id.example.com/magic?token=Q2xldmVyIGdpcmw4", 
                                                  "https://example.com/a?b=1&access_token=xyz987ABC654def",
                                                  "https://files.example.net/x.pdf?Signature=ZmFrZXNpZ25hdHVyZQ",
                                                  "https://example.com/reset#token=4f5e6d7c8b9a",
                                                  "https://example.com/?apikey=abcd1234efgh5678"]),
]
for kind, tmpl, values in hold_pii:
    for v in values:
        text = tmpl.format(v)
        if kind == "SECRET":
            secret = v.split("=")[-1]
            add(text, [(kind, secret)])
        else:
            add(text, [(kind, v)])
hold_keep = [
    "order 582910374 never came", "order no. 1029384756 is wrong", "Order #48213 arrived broken", "SKU TRX-2291-BLU-42",
    "item 30491-22 missing", "invoice INV/2025/04411", "Invoice No. 2025-11-000982", "PO# 7700123456", "RMA-88213-B",
    "delivered 2025-02-28 at 18:45", "expected by 03/14/2025", "on 14.03.2025 um 09:15", "2025-02-28T18:45:00+01:00",
    "between 9:00 and 17:30", "paid $1,049.00 plus $12.95 shipping", "€ 89,90 zurück", "refund of 1.249,00 EUR",
    "UPS 1Z 4E5 69F 03 9876 5432", "USPS 9400 1118 9956 1123 4567 89", "USPS 92055901755477000000000015",
    "FedEx 7712 3456 7890", "FedEx 612345678901", "DHL 1234567890", "version 3.11.7", "v4.0.12-beta.3", "iOS 18.1.1",
    "build 2025.02.28.1", "discount 25%", "battery at 87%", "zip 30301", "ZIP+4 30301-1234", "PLZ 80331 München",
    "EAN 5901234123457", "UPC 036000291452", "ISBN 0-306-40615-2", "IP 10.0.0.138", "coords 48.8584, 2.2945",
    "model A2848", "size 44 EU / 10 US", "2 x 250g bags", "room 2207", "the 1990s", "4K 120Hz TV", "a 5-star hotel",
    "https://example.com/p/4412?variant=88213&qty=2", "https://example.com/?promo=WINTER2025", "@support_team",
    "logo@2x.webp", "I'm at the mall", "meet at 3 dot 15", "left it at reception", "call center 24/7",
    "serial 00-1B-63-84-45-E6", "lot 7781-2025-03", "ticket #100234", "case 5002345678", "account tier 3",
]
for i, v in enumerate(hold_keep):
    add(["{}", "FYI {}.", "hmm, {} again", "{} (see photo)"][i % 4].format(v), keep=[v])
with HOLD.open("w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(f"held-out: {len(rows)} strings -> {HOLD}")


# ============================================================================ second held-out set
# Written after the first held-out set had been used for three fixes (EAN-13 barcodes passing
# Luhn, 'ZIP+4', lower-case 'rue'). As first scored: recall 0.972 (35/36; '1515 Broadway' missed, a
# street whose name is its type), no false redaction; one label was wrong (an IBAN with bad check
# digits, now a look-alike). Broadway was then fixed.
HOLD2 = Path(__file__).with_name("pii_holdout2.jsonl")
rows = []
for text, pii in [
    ("Kundennummer egal, schreib an lena.schmidt@t-online.de", [("EMAIL", "lena.schmidt@t-online.de")]),
    ("ping me -> raj.patel1987@gmail.com <- thx", [("EMAIL", "raj.patel1987@gmail.com")]),
    ("contact:SUPPORT@ACME-WIDGETS.COM", [("EMAIL", "SUPPORT@ACME-WIDGETS.COM")]),
    ("my email (for the refund) is j_o_h_n@mail.ru", [("EMAIL", "j_o_h_n@mail.ru")]),
    ("courriel: émilie.dubois@laposte.fr merci", [("EMAIL", "émilie.dubois@laposte.fr")]),
    ("reply to carlos at empresa dot mx", [("EMAIL", "carlos at empresa dot mx")]),
    ("email: nina [at] protonmail [dot] ch", [("EMAIL", "nina [at] protonmail [dot] ch")]),
    ("two accounts: a1@x-mail.com and b2@x-mail.com", [("EMAIL", "a1@x-mail.com"), ("EMAIL", "b2@x-mail.com")]),
    ("Ring me on 0161 496 0000 (Manchester office)", [("PHONE", "0161 496 0000")]),
    ("mobile +44 (0) 7911 123456", [("PHONE", "+44 (0) 7911 123456")]),
    ("call 718.555.0143 or 917-555-0176", [("PHONE", "718.555.0143"), ("PHONE", "917-555-0176")]),
    ("my number: 2025550143", [("PHONE", "2025550143")]),
    ("Tel. +49 89 636 48018", [("PHONE", "+49 89 636 48018")]),
    ("whatsapp +55 21 98765-4321 pls", [("PHONE", "+55 21 98765-4321")]),
    ("numéro 01 23 45 67 89", [("PHONE", "01 23 45 67 89")]),
    ("call the courier at (503) 555-0112, he never answers", [("PHONE", "(503) 555-0112")]),
    ("+1 206 555 0100 is my cell", [("PHONE", "+1 206 555 0100")]),
    ("Phone: 1.800.555.0199", [("PHONE", "1.800.555.0199")]),
    ("they charged 5425 2334 3010 9903 without asking", [("CARD", "5425 2334 3010 9903")]),
    ("card ending... no wait full number 4263982640269299", [("CARD", "4263982640269299")]),
    ("amex 3782-822463-10005 declined", [("CARD", "3782-822463-10005")]),
    ("Visa: 4917 4845 8989 7107, exp 09/26", [("CARD", "4917 4845 8989 7107")]),
    ("refund to 6011 5140 0000 0004 please", [("CARD", "6011 5140 0000 0004")]),
    ("please use AT48 3200 0000 1234 5864 for the refund", [("IBAN", "AT48 3200 0000 1234 5864")]),
    ("IBAN: PL27 1140 2004 0000 3002 0135 5387", [("IBAN", "PL27 1140 2004 0000 3002 0135 5387")]),
    ("my account SE3550000000054910000003", [("IBAN", "SE3550000000054910000003")]),
    ("please ship to 2300 Riverside Dr, Apt 12", [("ADDRESS", "2300 Riverside Dr")]),
    ("I'm at 1515 Broadway, New York", [("ADDRESS", "1515 Broadway")]),
    ("package went to 48 Maple Ave instead", [("ADDRESS", "48 Maple Ave")]),
    ("deliver to 9 Willow Crescent, Leeds", [("ADDRESS", "9 Willow Crescent")]),
    ("reset link https://acct.example.com/r?reset_token=7hG2kLp9QzX1 expired", [("SECRET", "7hG2kLp9QzX1")]),
    ("https://example.com/sso?SAMLart=x&session=AbC123xYz789 broke", [("SECRET", "AbC123xYz789")]),
    ("debug: ?client_id=web&client_secret=Zz9-yY8-xX7 in the URL bar", [("SECRET", "Zz9-yY8-xX7")]),
    ("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.Q0lQSEVSVEVYVA was in the screenshot",
     [("SECRET", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.Q0lQSEVSVEVYVA")]),
]:
    add(text, pii)
for v in [
    "order 7712004588", "order #A-99812-77", "ORDER 20250301-0042", "invoice 000981223", "Bestellnummer 302-1182733-9921",
    "SKU 00841-BK-XL", "item no. 7731192", "tracking 9400 1118 9922 3344 5566 77", "tracking 1Z 0X6 1E9 03 1234 5678",
    "FedEx 392847561023", "delivered 28.02.2025 17:05", "2025/02/28", "Feb 28th 2025 at 5:05pm", "02-28-2025",
    "from 09:00 to 18:00", "total $2,349.97", "EUR 1.099,-", "£ 14.99 each", "₹ 12,499", "costs 3 999 kr",
    "version 10.0.19045.5011", "v1.2.3-alpha+001", "firmware 2.0.3.1187", "50% off", "up 12.4% YoY", "ZIP 60614",
    "postal code 110001", "PLZ 1010 Wien", "ISBN 978-0-596-52068-7", "GTIN 00012345600012", "IMEI 356938035643809",
    "serial no. 4C530001120611113114", "IP 172.16.254.1", "lat 51.5074 lon -0.1278", "dimensions 120 x 60 x 75 cm",
    "8 x 10 photo", "rated 4.8 / 5 by 12,345 users", "page 12 of 348", "Chapter 7 Park Lane review", "@acme on twitter",
    "avatar@3x.png", "I was at the shop at 9", "https://example.com/p/123?utm_medium=email&utm_source=crm",
    "https://example.com/cart?voucher=SPRING25&qty=3", "the keyboard key is stuck", "session musicians were great",
    "auth failed twice", "token ring toy", "code SAVE10 did not work", "IBAN field was empty", "1-800 numbers never work",
    # Mislabelled as an IBAN when written: its mod-97 check digits are wrong, so it must stay.
    "ie64 ircu 5010 1012 3456 78",
    "4 Main Courses", "Ave Maria CD", "Suite 16 by Bach", "Area 51 t-shirt", "Apollo 13 poster",
]:
    add(v + " - see above", keep=[v])
with HOLD2.open("w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(f"held-out 2: {len(rows)} strings -> {HOLD2}")

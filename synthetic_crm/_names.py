"""Company-, partner- and deal-name generators.

Names are built from word lists; a small share is drawn from a list of
deliberately awkward (but valid) names with quotes, commas, apostrophes,
non-ASCII letters and emoji, which a loader has to round-trip unchanged.
"""

from __future__ import annotations

import random

_STEMS = (
    "North", "Blue", "Silver", "Bright", "Clear", "Red", "Iron", "Cloud", "Data", "Pine",
    "Summit", "Vertex", "Nova", "Quantum", "Harbor", "Stone", "River", "Maple", "Cedar",
    "Falcon", "Atlas", "Orbit", "Prism", "Lumen", "Apex", "Vector", "Sky", "Sun", "Granite",
    "Copper", "Echo", "Delta", "Zen", "Bold", "Swift", "True", "Open", "Peak", "Crest",
    "Ever", "Oak", "Star", "Wave", "Fox", "Hill", "Lake", "Cobalt", "Amber", "Polar", "Terra",
)  # fmt: skip
_ENDINGS = (
    "wind", "peak", "stone", "field", "bridge", "gate", "works", "point", "line", "wave",
    "forge", "path", "stack", "scale", "base", "light", "core", "mark", "view", "way", "hub",
    "logic", "sight", "grid", "flow", "shift", "spring", "ridge", "port", "loop",
)  # fmt: skip
_SURNAMES = (
    "Smith", "Johnson", "Garcia", "Chen", "Patel", "Nguyen", "Kim", "Rossi", "Dubois",
    "Novak", "Larsen", "Tanaka", "Silva", "Cohen", "Murphy", "Walsh", "Fischer", "Schmidt",
    "Jensen", "Kowalski", "Moreau", "Haddad", "Okafor", "Singh", "Becker", "Lindqvist",
    "Romero", "Sato", "Hughes", "Bauer",
)  # fmt: skip
_COMPANY_SUFFIXES = (
    "Inc.", "LLC", "Ltd", "GmbH", "Group", "Labs", "Technologies", "Systems", "Software",
    "Analytics", "Solutions", "Corp", "Holdings", "Networks", "Cloud", "AI", "Health",
    "Logistics", "Retail", "Bank",
)  # fmt: skip
_PARTNER_SUFFIXES = (
    "Consulting", "Partners", "Digital", "Advisors", "Integrations", "IT Services",
    "Solutions", "Group", "Agency", "Resellers", "Tech", "Ventures", "Cloud Services",
)  # fmt: skip
_PRODUCTS = (
    "Platform", "Enterprise License", "Analytics Suite", "Support Plan", "Data Pipeline",
    "Security Add-on", "Seat Expansion", "Renewal", "Pilot", "Migration Services",
    "Cloud Credits", "Training Package", "Premium Tier", "API Access",
)  # fmt: skip

# Valid data that stresses quoting and encoding; never contains a newline.
AWKWARD_NAMES = (
    "O'Brien & Partners",
    "Müller & Søn GmbH",
    "Smith, Jones & Co.",
    '"Best" Solutions, Inc.',
    "Zoë's Café Consulting",
    "Rocket 🚀 Labs",
    "Ærøskøbing Data ApS",
    "Łódź Software Sp. z o.o.",
    "日本データ株式会社",
    'D\'Angelo "DJ" Systems',
    "Señor Software, S.A.",
    "Straße & Weg AG",
    "Crème Brûlée Analytics",
    "Ünal Bilişim A.Ş.",
    "Sparkle ✨ Digital",
    "Back\\slash; Semi-colon Ltd",
    'L\'Atelier, "Le" Cloud',
    "Ольга Консалтинг",
)

AWKWARD_SHARE = 0.03


def company_name(rng: random.Random) -> str:
    r = rng.random()
    if r < AWKWARD_SHARE:
        return AWKWARD_NAMES[int(rng.random() * len(AWKWARD_NAMES))]
    if r < 0.75:
        stem = _STEMS[int(rng.random() * len(_STEMS))]
        ending = _ENDINGS[int(rng.random() * len(_ENDINGS))]
        suffix = _COMPANY_SUFFIXES[int(rng.random() * len(_COMPANY_SUFFIXES))]
        return f"{stem}{ending} {suffix}"
    a = _SURNAMES[int(rng.random() * len(_SURNAMES))]
    b = _SURNAMES[int(rng.random() * len(_SURNAMES))]
    suffix = _COMPANY_SUFFIXES[int(rng.random() * len(_COMPANY_SUFFIXES))]
    return f"{a} & {b} {suffix}" if a != b else f"{a} {suffix}"


def partner_name(rng: random.Random) -> str:
    r = rng.random()
    if r < AWKWARD_SHARE:
        return AWKWARD_NAMES[int(rng.random() * len(AWKWARD_NAMES))]
    suffix = _PARTNER_SUFFIXES[int(rng.random() * len(_PARTNER_SUFFIXES))]
    if r < 0.55:
        surname = _SURNAMES[int(rng.random() * len(_SURNAMES))]
        return f"{surname} {suffix}"
    stem = _STEMS[int(rng.random() * len(_STEMS))]
    ending = _ENDINGS[int(rng.random() * len(_ENDINGS))]
    return f"{stem}{ending} {suffix}"


def deal_name(rng: random.Random) -> str:
    """Deal names are nullable: about 1 % are empty."""
    if rng.random() < 0.01:
        return ""
    product = _PRODUCTS[int(rng.random() * len(_PRODUCTS))]
    return f"{company_name(rng)} - {product}"

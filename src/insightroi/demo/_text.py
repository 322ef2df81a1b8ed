"""A small compositional grammar for customer feedback text.

The point is that a topic classifier's accuracy must be a real question: phrases are built from
slots with synonyms, complaints and compliments both use negation ("wasn't late", "not bad at
all", "never arrived"), messages mix topics, vary in length, carry typos, and some are ambiguous
or off-topic. The true labels live with the generator, never in the text's form.
"""

from __future__ import annotations

import random

__all__ = ["render_text", "OFF_TOPIC", "NEW_THEME"]

OFF_TOPIC = "off_topic"  # a pseudo-topic: the row's true topic list is empty
NEW_THEME = "counterfeit"  # appears late in the world, not in the taxonomy

_ITEM = {
    "apparel": ["jacket", "shirt", "pair of jeans", "hoodie", "dress", "sneakers", "coat", "leggings"],
    "electronics": ["headphones", "speaker", "charger", "smartwatch", "earbuds", "power bank", "tablet"],
    "home": ["lamp", "blender", "kettle", "vacuum", "coffee maker", "desk chair", "toaster"],
    "outdoor": ["tent", "backpack", "camping stove", "headlamp", "sleeping bag", "water bottle"],
    "beauty": ["hair dryer", "face cream", "trimmer", "perfume", "curling iron", "serum"],
}
_GENERIC_ITEM = ["item", "product", "thing", "order", "purchase", "one I got"]

_NEG_BY_TOPIC = {
    "shipping_delay": [
        "my {item} arrived {n} {unit} late",
        "delivery took {forever}",
        "still waiting for the package, {when}",
        "tracking hasn't updated {when}",
        "the parcel never showed up {when}",
        "shipping was {very} slow",
        "it was supposed to come {day} and it {did_not} arrive until {later}",
        "the courier keeps saying out for delivery but nothing",
        "order is {n} {unit} overdue",
        "estimated delivery came and went, no {item}",
    ],
    "damaged_packaging": [
        "the box was {crushed} and the {item} got scratched",
        "package arrived {torn}",
        "packaging was {crushed}, {item} inside had a dent",
        "it {did_not} come packed properly, just thrown in a bag",
        "the {item} was leaking all over the box",
        "outer carton {crushed}, looks like it was dropped",
        "arrived in a {torn} envelope with parts missing",
    ],
    "sizing": [
        "runs {n_size} size{s} small",
        "way too {tight} around the {body}",
        "the fit is off, ordered my usual size and it's {huge}",
        "{body} is too long, had to send it back",
        "sizing chart is {useless}",
        "it {did_not} fit at all",
        "had to size up twice",
        "not true to size",
    ],
    "product_defect": [
        "it {stopped} after {n} {unit}",
        "the {part} {cracked} the first time I used it",
        "came {defective} out of the box",
        "the {part} is faulty and keeps {failing}",
        "{item} is broken, the {part} {cracked}",
        "mine {stopped} and now it does nothing",
        "quality control must be asleep, {part} was {defective}",
        "doesn't work properly, the {part} malfunctions",
    ],
    "battery_power": [
        "battery {drains} in {short_time}",
        "it gets {hot} while charging",
        "won't hold a charge anymore",
        "the charging port is {flaky}",
        "powers off randomly even at {pct}% battery",
        "won't turn on unless it's plugged in",
        "takes {forever} to charge",
    ],
    "customer_service": [
        "support {never_answered} my {msgs}",
        "the agent was {rude} and {unhelpful}",
        "I was on hold for {n_min} minutes",
        "customer service {did_not} help, they just closed the ticket",
        "asked for a refund {n} times, no response",
        "nobody from support ever got back to me",
        "chat bot kept looping, could not reach a human",
    ],
    "price_value": [
        "{overpriced} for what you get",
        "not worth the money",
        "found it {cheaper} elsewhere",
        "the price went up {pct}% since last month",
        "way too expensive for this quality",
        "you pay premium and get budget",
    ],
    NEW_THEME: [
        "this looks {fake}, not the genuine brand",
        "pretty sure it's a counterfeit, the logo is {wrong}",
        "serial number doesn't check out on the maker's site",
        "the hologram sticker is missing, looks like a knockoff",
        "packaging has spelling mistakes, this is not authentic",
    ],
}

# Positive or neutral statements about a topic; several use negation in a positive sense.
_POS_BY_TOPIC = {
    "shipping_delay": [
        "delivery wasn't late at all", "arrived {early}", "shipping was quick", "came a day early",
        "no delays this time",
    ],
    "damaged_packaging": ["packed really well", "the box wasn't damaged at all", "well protected packaging"],
    "sizing": ["fits {perfectly}", "true to size", "the fit is spot on", "size was not an issue"],
    "product_defect": ["no defects so far", "hasn't broken yet", "built solid, nothing flimsy"],
    "battery_power": ["battery lasts {long}", "charges fast", "the battery isn't bad at all"],
    "customer_service": ["support was {helpful}", "the agent sorted it out quickly", "service wasn't slow"],
    "price_value": ["{worth} every penny", "great value for the price", "not expensive for what it does"],
    "praise": [
        "{love} it", "{great} {item}", "would {recommend} to anyone", "exactly what I wanted",
        "not bad at all", "really happy with this", "{great} quality", "can't complain",
        "does the job {perfectly}", "my {family_member} {love}s it",
    ],
}

_AMBIGUOUS = [
    "it's fine I guess", "meh", "ok", "it is what it is", "hmm not sure yet", "does what it says",
    "could be better could be worse", "interesting", "well that happened", "3 stars, nothing special",
    "not what I expected", "about what you'd expect",
]
_OFF_TOPIC = [
    "do you ship to {country}?", "how do I change my email address", "is there a student discount",
    "what are your store hours", "can I get an invoice with my company name", "happy holidays everyone",
    "does this come in {color}?", "my cat likes the box lol", "test message please ignore",
    "where can I leave a review for the store itself", "is the {item} compatible with last year's model?",
]

_SLOTS = {
    "n": ["two", "three", "five", "2", "3", "4", "10", "several", "a couple of"],
    "unit": ["days", "weeks", "days", "hours"],
    "forever": ["forever", "ages", "almost three weeks", "way too long", "over a month"],
    "when": ["for a week", "since monday", "in days", "for ages", "", "for 10 days now"],
    "very": ["very", "really", "painfully", "incredibly", "so"],
    "day": ["on friday", "last week", "before the weekend", "by the 3rd", "on tuesday"],
    "later": ["the following week", "two weeks later", "after the holiday", "today"],
    "did_not": ["didn't", "did not", "never did", "didnt"],
    "crushed": ["crushed", "dented", "smashed", "caved in", "squashed"],
    "torn": ["torn open", "ripped", "wet and torn", "half open"],
    "n_size": ["a full", "one", "two", "half a"],
    "s": ["", "s"],
    "tight": ["tight", "small", "loose", "big", "short"],
    "body": ["shoulders", "waist", "chest", "sleeves", "legs", "toes"],
    "huge": ["huge", "tiny", "massive", "way off"],
    "useless": ["useless", "wrong", "totally off", "misleading"],
    "stopped": ["stopped working", "died", "quit working", "stopped responding", "broke"],
    "part": ["hinge", "button", "switch", "zipper", "screen", "handle", "lid", "strap", "motor", "clip"],
    "cracked": ["cracked", "snapped", "fell off", "split", "broke"],
    "defective": ["defective", "faulty", "broken", "dead", "DOA"],
    "failing": ["failing", "disconnecting", "jamming", "flickering", "shutting off"],
    "drains": ["drains", "dies", "runs out", "is empty"],
    "short_time": ["an hour", "2 hours", "no time", "half a day", "minutes"],
    "hot": ["hot", "really warm", "too hot to touch", "scary hot"],
    "flaky": ["flaky", "loose", "unreliable", "wobbly"],
    "pct": ["40", "60", "25", "80", "30"],
    "never_answered": ["never answered", "ignored", "didn't reply to", "never responded to"],
    "msgs": ["emails", "messages", "calls", "three emails", "tickets"],
    "rude": ["rude", "dismissive", "condescending", "short with me"],
    "unhelpful": ["unhelpful", "useless", "clueless", "no help"],
    "n_min": ["45", "90", "30", "over 60", "40"],
    "overpriced": ["overpriced", "too pricey", "expensive", "a rip off"],
    "cheaper": ["cheaper", "half the price", "for less", "much cheaper"],
    "fake": ["fake", "like a cheap copy", "counterfeit", "like a knockoff"],
    "wrong": ["wrong", "off", "misspelled", "blurry"],
    "early": ["early", "a day early", "ahead of schedule", "right on time"],
    "perfectly": ["perfectly", "great", "just right", "like a glove"],
    "long": ["all day", "for days", "forever", "longer than expected"],
    "helpful": ["helpful", "super helpful", "kind", "quick and friendly"],
    "worth": ["worth", "totally worth", "well worth"],
    "love": ["love", "absolutely love", "really like", "adore"],
    "great": ["great", "excellent", "amazing", "solid", "fantastic", "decent"],
    "recommend": ["recommend", "definitely recommend", "happily recommend"],
    "family_member": ["wife", "husband", "son", "daughter", "mom", "partner", "roommate"],
    "country": ["Canada", "Mexico", "Ireland", "Australia"],
    "color": ["blue", "black", "red", "a bigger size"],
}

_OPEN = {
    "review": ["", "", "", "Update: ", "Honest review: ", "Bought this for my {family_member}. ", "Second one I bought. "],
    "ticket": ["Hi, ", "Hello team, ", "", "Order #{ordno}: ", "Re: my order. ", "To whom it may concern, "],
    "chat": ["hi ", "hello? ", "hey ", "", "quick question, ", "hi there, "],
    "return": ["", "Return reason: ", "", "Reason: "],
}
_CLOSE = {
    "review": ["", "", "", " Would not buy again.", " Two stars.", " Disappointed."],
    "ticket": ["", " Please advise.", " I want a refund.", " Thanks.", " Please fix this.", " Regards"],
    "chat": ["", " thx", " ??", " pls help", " ok thanks", ""],
    "return": ["", "", " Sending it back.", " Want my money back."],
}
_CLOSE_POSITIVE = ["", "", " Thanks!", " 10/10.", " Five stars.", " :)", " Will buy again."]
_ASIDES = ["looks nice though", "the color is nice", "design is great", "the app is easy to use",
           "nice website", "the manual is clear at least"]
_JOIN_SAME = [". ", ", and ", "; ", " and also ", ". Also ", ". "]
_JOIN_CONTRAST = [" but ", ", however ", ". On the other hand ", " although ", ". Still, "]
_HEDGE = ["", "", "", "honestly ", "to be fair ", "tbh ", "I think ", "kind of "]

_KEYBOARD_NEIGHBOR = dict(zip("aeiourstnlmdcph", "sriyptdyrkndxvo"))


def _fill(template: str, rng: random.Random, category: str) -> str:
    out = []
    i = 0
    while True:
        j = template.find("{", i)
        if j < 0:
            out.append(template[i:])
            break
        k = template.index("}", j)
        out.append(template[i:j])
        key = template[j + 1 : k]
        if key == "item":
            pool = _ITEM.get(category, _GENERIC_ITEM)
            val = pool[rng.randrange(len(pool))] if rng.random() < 0.7 else _GENERIC_ITEM[rng.randrange(len(_GENERIC_ITEM))]
        elif key == "ordno":
            val = str(rng.randrange(10000, 999999))
        else:
            pool = _SLOTS[key]
            val = pool[rng.randrange(len(pool))]
        out.append(val)
        i = k + 1
    return "".join(out).replace("  ", " ").strip()


def _typos(text: str, rng: random.Random) -> str:
    # Realistic noise: swapped, dropped, doubled or fat-fingered letters, lost apostrophes.
    chars = list(text)
    n_typos = (rng.randrange(1, 4))
    for _ in range(n_typos):
        if len(chars) < 4:
            break
        p = (rng.randrange(1, len(chars) - 2))
        kind = rng.randrange(4)
        if not chars[p].isalpha():
            continue
        if kind == 0:
            chars[p], chars[p + 1] = chars[p + 1], chars[p]
        elif kind == 1:
            del chars[p]
        elif kind == 2:
            chars.insert(p, chars[p])
        else:
            chars[p] = _KEYBOARD_NEIGHBOR.get(chars[p], chars[p])
    out = "".join(chars)
    if rng.random() < 0.4:
        out = out.replace("'", "")
    return out


def _clause(topic: str, positive: bool, rng: random.Random, category: str) -> str:
    if topic == OFF_TOPIC:
        bank = _OFF_TOPIC
    elif positive or topic == "praise":
        bank = _POS_BY_TOPIC.get(topic, _POS_BY_TOPIC["praise"])
    else:
        bank = _NEG_BY_TOPIC[topic]
    text = _fill(bank[rng.randrange(len(bank))], rng, category)
    hedge = _HEDGE[rng.randrange(len(_HEDGE))]
    return hedge + text


def render_text(
    topics: tuple[str, ...], sentiment: str, source: str, category: str, rng: random.Random
) -> str:
    """Render one feedback message for the given true labels.

    Parameters
    ----------
    topics : tuple of str
        True topics (taxonomy topics, the new theme, or empty for off-topic / ambiguous text).
    sentiment : {"positive", "negative", "neutral"}
        True overall sentiment.
    source : {"review", "ticket", "chat", "return"}
    category : str
        Product category, used to pick plausible item words.
    rng : random.Random
        Python's generator: this is a per-row loop, where its speed matters (seed it from numpy).
    """
    parts: list[str] = []
    if not topics:
        bank = _AMBIGUOUS if (sentiment == "neutral" and rng.random() < 0.5) or source == "review" else _OFF_TOPIC
        parts.append(_fill(bank[rng.randrange(len(bank))], rng, category))
    else:
        for t in topics:
            # Complaint topics are negative unless the whole message is positive (then the topic
            # is mentioned as a minor issue, e.g. "love it but runs small").
            parts.append(_clause(t, positive=(t == "praise"), rng=rng, category=category))
        if sentiment == "positive" and "praise" not in topics and rng.random() < 0.7:
            parts.insert(0, _clause("praise", True, rng, category))
        if sentiment == "negative" and rng.random() < 0.25:
            # a positive aside about an unrelated aspect (negated-complaint style), no topic label
            parts.append(_ASIDES[rng.randrange(len(_ASIDES))])
        if sentiment == "neutral" and rng.random() < 0.5:
            parts.append(_AMBIGUOUS[rng.randrange(len(_AMBIGUOUS))])
    # Length variety: sometimes repeat an elaboration of the first topic.
    if topics and rng.random() < 0.2:
        parts.append(_clause(topics[0], positive=(topics[0] == "praise"), rng=rng, category=category))
    text = parts[0]
    for p in parts[1:]:
        joins = _JOIN_CONTRAST if (sentiment != "negative" and rng.random() < 0.6) else _JOIN_SAME
        text += joins[rng.randrange(len(joins))] + p
    text = _fill(_OPEN[source][rng.randrange(len(_OPEN[source]))], rng, category) + " " + text
    closers = _CLOSE_POSITIVE if sentiment == "positive" else _CLOSE[source]
    text = text.strip() + closers[rng.randrange(len(closers))]
    text = text.strip()
    r = rng.random()
    if r < 0.3:
        text = _typos(text, rng)
    if rng.random() < 0.25:
        text = text.lower()
    elif rng.random() < 0.6:
        text = text[:1].upper() + text[1:]
    if rng.random() < 0.05:
        text = text.upper() if sentiment == "negative" else text + "!!"
    return text

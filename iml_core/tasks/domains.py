"""The words a generated task is written in: two domains of 20 attributes with 5 values each and 8
classes. The rule's shape never depends on them (generator.py)."""

from __future__ import annotations

from dataclasses import dataclass

from iml_core.tasks.types import Attribute, attribute


@dataclass(frozen=True)
class Domain:
    """The words a generated task is written in; the rule's shape does not depend on them."""
    description: str
    noun: str
    attributes: tuple[Attribute, ...]  # 20 of them, with 5 values each: the most the knobs ask for
    classes: tuple[str, ...]  # 8: the most the knobs ask for
    class_phrase: str  # how a sentence gives a class


# The first ten attributes, with their first two values, are the paper's: a generated task with
# two-valued attributes reads like the benchmark.
CREATURE_POOL = (
    attribute("wing type", ("feathered", "has feathered wings"), ("leathery", "has leathery wings"),
              ("glassy", "has glassy wings"), ("ragged", "has ragged wings"), ("folded", "has folded wings")),
    attribute("diet", ("plants", "eats plants"), ("meat", "eats meat"), ("insects", "eats insects"),
              ("fish", "eats fish"), ("fruit", "eats fruit")),
    attribute("habitat", ("forest", "lives in the forest"), ("desert", "lives in the desert"),
              ("sea", "lives in the sea"), ("mountains", "lives in the mountains"), ("swamp", "lives in the swamp")),
    attribute("size", ("small", "is small"), ("large", "is large"), ("medium", "is medium-sized"),
              ("tiny", "is tiny"), ("huge", "is huge")),
    attribute("colour", ("red", "is red"), ("blue", "is blue"), ("green", "is green"), ("yellow", "is yellow"),
              ("purple", "is purple")),
    attribute("skin", ("scales", "is covered in scales"), ("fur", "is covered in fur"),
              ("feathers", "is covered in feathers"), ("bark", "is covered in bark"),
              ("slime", "is covered in slime")),
    attribute("active time", ("day", "is active by day"), ("night", "is active at night"),
              ("dawn", "is active at dawn"), ("dusk", "is active at dusk"), ("midday", "is active at midday")),
    attribute("eye count", ("two", "has two eyes"), ("four", "has four eyes"), ("one", "has one eye"),
              ("three", "has three eyes"), ("six", "has six eyes")),
    attribute("tail", ("long", "has a long tail"), ("short", "has a short tail"), ("forked", "has a forked tail"),
              ("curled", "has a curled tail"), ("spiked", "has a spiked tail")),
    attribute("call", ("song", "sings"), ("hiss", "hisses"), ("roar", "roars"), ("click", "clicks"),
              ("whistle", "whistles")),
    attribute("horns", ("none", "has no horns"), ("one", "has one horn"), ("two", "has two horns"),
              ("three", "has three horns"), ("curved", "has curved horns")),
    attribute("legs", ("two", "walks on two legs"), ("four", "walks on four legs"), ("six", "walks on six legs"),
              ("eight", "walks on eight legs"), ("ten", "walks on ten legs")),
    attribute("back", ("smooth", "has a smooth back"), ("spiny", "has a spiny back"),
              ("shelled", "has a shelled back"), ("ridged", "has a ridged back"), ("plated", "has a plated back")),
    attribute("temper", ("shy", "is shy"), ("bold", "is bold"), ("calm", "is calm"), ("playful", "is playful"),
              ("grumpy", "is grumpy")),
    attribute("smell", ("sweet", "smells sweet"), ("sour", "smells sour"), ("musky", "smells musky"),
              ("smoky", "smells smoky"), ("fresh", "smells fresh")),
    attribute("nest", ("burrow", "nests in a burrow"), ("tree", "nests in a tree"), ("cave", "nests in a cave"),
              ("reef", "nests on a reef"), ("dune", "nests in a dune")),
    attribute("pattern", ("plain", "has a plain coat"), ("striped", "has a striped coat"),
              ("spotted", "has a spotted coat"), ("banded", "has a banded coat"),
              ("speckled", "has a speckled coat")),
    attribute("ears", ("pointed", "has pointed ears"), ("round", "has round ears"), ("floppy", "has floppy ears"),
              ("tufted", "has tufted ears"), ("hidden", "has hidden ears")),
    attribute("gait", ("hopping", "moves by hopping"), ("crawling", "moves by crawling"),
              ("running", "moves by running"), ("gliding", "moves by gliding"), ("waddling", "moves by waddling")),
    attribute("season", ("spring", "breeds in spring"), ("summer", "breeds in summer"),
              ("autumn", "breeds in autumn"), ("winter", "breeds in winter"), ("monsoon", "breeds in the monsoon")),
)

LOAN_POOL = (
    attribute("income", ("high", "has a high income"), ("low", "has a low income"),
              ("moderate", "has a moderate income"), ("irregular", "has an irregular income"),
              ("seasonal", "has a seasonal income")),
    attribute("employment", ("salaried", "is salaried"), ("self-employed", "is self-employed"),
              ("unemployed", "is unemployed"), ("contract", "works on contract"), ("retired", "is retired")),
    attribute("credit history", ("clean", "has a clean credit history"),
              ("spotty", "has a spotty credit history"), ("thin", "has a thin credit history"),
              ("defaulted", "has defaulted on a loan before"), ("bankrupt", "has been bankrupt")),
    attribute("debt", ("light", "has light debt"), ("heavy", "has heavy debt"), ("average", "has average debt"),
              ("zero", "has zero debt"), ("rising", "has rising debt")),
    attribute("housing", ("owner", "owns a home"), ("renter", "rents a home"), ("mortgage", "pays a mortgage"),
              ("family", "lives with family"), ("company", "lives in company housing")),
    attribute("purpose", ("car", "wants the loan for a car"), ("house", "wants the loan for a house"),
              ("business", "wants the loan for a business"), ("education", "wants the loan for education"),
              ("travel", "wants the loan for travel")),
    attribute("amount", ("small", "asks for a small loan"), ("large", "asks for a large loan"),
              ("medium", "asks for a medium loan"), ("tiny", "asks for a tiny loan"),
              ("jumbo", "asks for a jumbo loan")),
    attribute("age group", ("young", "is young"), ("senior", "is a senior"), ("middle-aged", "is middle-aged"),
              ("student", "is a student"), ("retiree", "is a retiree")),
    attribute("collateral", ("property", "offers property as collateral"), ("none", "offers no collateral"),
              ("vehicle", "offers a vehicle as collateral"), ("jewellery", "offers jewellery as collateral"),
              ("shares", "offers shares as collateral")),
    attribute("co-signer", ("none", "has no co-signer"), ("parent", "has a parent as co-signer"),
              ("spouse", "has a spouse as co-signer"), ("friend", "has a friend as co-signer"),
              ("employer", "has the employer as co-signer")),
    attribute("bank account", ("new", "has a new bank account"), ("established", "has an established bank account"),
              ("old", "has an old bank account"), ("dormant", "has a dormant bank account"),
              ("joint", "has a joint bank account")),
    attribute("region", ("urban", "lives in an urban area"), ("rural", "lives in a rural area"),
              ("suburban", "lives in a suburban area"), ("coastal", "lives in a coastal area"),
              ("remote", "lives in a remote area")),
    attribute("dependents", ("none", "has no dependents"), ("one", "has one dependent"),
              ("two", "has two dependents"), ("three", "has three dependents"), ("many", "has many dependents")),
    attribute("savings", ("ample", "has ample savings"), ("scarce", "has scarce savings"),
              ("modest", "has modest savings"), ("growing", "has growing savings"),
              ("frozen", "has frozen savings")),
    attribute("term", ("short", "wants a short term"), ("long", "wants a long term"),
              ("medium", "wants a medium term"), ("flexible", "wants a flexible term"),
              ("fixed", "wants a fixed term")),
    attribute("payments", ("on time", "pays on time"), ("late", "pays late"), ("missed", "has missed payments"),
              ("early", "pays early"), ("irregular", "pays irregularly")),
    attribute("education", ("degree", "has a degree"), ("diploma", "has a diploma"),
              ("none", "has no qualifications"), ("doctorate", "has a doctorate"),
              ("apprenticeship", "has an apprenticeship")),
    attribute("marital status", ("single", "is single"), ("married", "is married"), ("divorced", "is divorced"),
              ("widowed", "is widowed"), ("partnered", "is partnered")),
    attribute("job tenure", ("new", "is new in the job"), ("steady", "has a steady job"),
              ("long", "has held the job for long"), ("brief", "has held the job briefly"),
              ("lifelong", "has held the job for life")),
    attribute("channel", ("branch", "applied at a branch"), ("online", "applied online"),
              ("broker", "applied through a broker"), ("phone", "applied by phone"),
              ("agent", "applied through an agent")),
)

DOMAINS: dict[str, Domain] = {
    "creatures": Domain("made-up creatures sorted into species", "creature", CREATURE_POOL,
                        ("Florp", "Zindle", "Quarrow", "Brimlet", "Vexal", "Moxen", "Tarrik", "Glimmet"), "is a {}"),
    "loans": Domain("loan applications and the bank's decision", "applicant", LOAN_POOL,
                    ("Approve", "Decline", "Refer", "Defer", "Escalate", "Counteroffer", "Waitlist", "Reprice"),
                    "gets the decision {}"),
}

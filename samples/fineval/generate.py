"""Regenerate the shipped FinEval sample sets (deterministic): python samples/fineval/generate.py

Written for this project (not copied from any benchmark). Sizes are chosen so a change of a few points is
visible above bootstrap noise on the similar tasks (>= 200 items), while base + CPT+IT + DPO on every task still
fit a CPU run of a 135M model.

Held out from the training data (samples/fintrain/generate.py) by ENTITY and by TEMPLATE: the company, person,
place and commodity names below and every sentence template appear only here; the training generator has its own
disjoint lists (tests/test_sample_data.py checks both, and that the data stage's 13-gram decontamination finds
no overlap). General-knowledge items (science, capitals, arithmetic) are ones a small instruction model can
partly answer, with labels that are unambiguously right, so "general skills kept" is measurable.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent
SEED = 20261130

# How many items each generated set gets.
SIZES = {"fpb_sentiment": 240, "headline": 240, "fomc": 240, "fin_ner": 240, "edtsum_headlines": 60,
         "arc_easy": 200, "nq_open": 200, "mmlu_finance": 200, "cfa_easy": 150, "instruction_following": 100,
         "tatqa_numeric": 60, "credit_scoring": 60}

# --- entities used ONLY by the evaluation sets --------------------------------------------------------------------
COMPANIES = ["Aurora Paper", "Baltica Steel", "Caledon Foods", "Delta Marine Systems", "Elmstone Software",
             "Fjordline Shipping", "Granite Cement", "Helios Solar", "Isbrand Dairy", "Jarvik Engineering",
             "Kalmar Textiles", "Lindqvist Media", "Morrow Chemicals", "Nordhavn Ports", "Olavi Forest Products",
             "Pellervo Electronics", "Ruska Packaging", "Saima Telecom", "Tornio Mining", "Uusimaa Construction",
             "Valkea Pharmaceuticals", "Wexford Brewing", "Ylva Furniture", "Zephyr Wind Power"]
PEOPLE = ["Anna Lindberg", "Mikko Virtanen", "Helena Strand", "Jonas Berg", "Eero Salo", "Laura Niemi",
          "Peter Holm", "Sara Koskinen", "Tomas Ek", "Ingrid Dahl", "Oskar Lund", "Maija Heikkinen",
          "Henrik Wall", "Elina Rantanen", "Viktor Sandberg", "Karin Lehto"]
PLACES = ["Helsinki", "Tampere", "Turku", "Oulu", "Stockholm", "Gothenburg", "Copenhagen", "Aarhus", "Tallinn",
          "Riga", "Vilnius", "Hamburg", "Rotterdam", "Antwerp", "Gdansk"]
CLIENTS = ["a Swedish utility", "a German carmaker", "a Norwegian oil company", "a Dutch retailer",
           "a Danish hospital group", "a Polish railway operator"]
PRODUCTS = ["paper machines", "cargo cranes", "control software", "steel beams", "cooling systems",
            "wind turbine blades", "packaging lines", "network equipment"]
COMMODITIES = ["gold", "silver"]  # headline task: FinGPT's headline set is about gold prices
FED_PEOPLE = ["Chair Ellen Marsh", "Vice Chair Robert Kline", "Governor Lisa Okoro", "President James Avery",
              "Governor Nora Patel", "President Samuel Reyes"]


def entity_names() -> dict[str, list[str]]:
    """Names that must never appear in the training data (checked by the tests)."""
    return {"companies": COMPANIES, "people": PEOPLE + [" ".join(p.split()[-2:]) for p in FED_PEOPLE],
            "places": PLACES, "commodities": COMMODITIES}


# --- sentence templates used ONLY by the evaluation sets ----------------------------------------------------------
FPB = {
    "positive": [
        "Operating profit of {co} rose to EUR {a} mn from EUR {b} mn in the corresponding period in {y}.",
        "Net sales of {co} increased by {p} % to EUR {a} mn in the {q} quarter of {y}.",
        "{co} has won an order worth EUR {a} mn from {client} to supply {product}.",
        "{co} said its profit before taxes more than doubled to EUR {a} mn in {y}.",
        "The order backlog of {co} grew by {p} %, and the company raised its outlook for {y}.",
        "Earnings per share of {co} improved to EUR {e} from EUR {e2} a year earlier.",
    ],
    "negative": [
        "Operating profit of {co} fell to EUR {b} mn from EUR {a} mn in the corresponding period in {y}.",
        "Net sales of {co} decreased by {p} % to EUR {b} mn in the {q} quarter of {y}.",
        "{co} will cut {n} jobs at its plant in {place} as demand continues to weaken.",
        "{co} swung to an operating loss of EUR {b} mn and lowered its guidance for {y}.",
        "{co} issued a profit warning, saying its result for {y} will be clearly below the previous year.",
        "Earnings per share of {co} dropped to EUR {e2} from EUR {e} a year earlier.",
    ],
    "neutral": [
        "{co} will publish its interim report for the {q} quarter of {y} on {d} {month}.",
        "{co} is headquartered in {place} and employs about {n} people.",
        "The annual general meeting of {co} will be held in {place} on {d} {month} {y}.",
        "The shares of {co} are listed on the main market of the {place} stock exchange.",
        "{co} operates production facilities in {place} and {place2}.",
        "The financial statements of {co} are prepared in accordance with IFRS.",
    ],
}

HEADLINES = {  # direction -> templates about the commodity's price
    "up": ["{Com} climbs {p}% as dollar weakens", "{Com} prices jump to {w}-week high on safe-haven demand",
           "{Com} extends gains to ${x} as yields ease",
           "{Com} futures settle higher at ${x} an ounce", "{Com} rallies for third session on rate-cut bets",
           "Spot {com} gains ${g} after soft inflation data"],
    "down": ["{Com} slips {p}% as Treasury yields rise", "{Com} prices fall to lowest level in {w} weeks",
             "{Com} extends losses to ${x} as yields climb",
             "{Com} futures settle lower at ${x} an ounce", "{Com} drops for third session as dollar firms",
             "Spot {com} loses ${g} after strong jobs report"],
    "flat": ["{Com} steady near ${x} ahead of jobs data", "{Com} little changed as investors await Fed minutes",
             "{Com} prices flat in quiet holiday trade", "{Com} holds near ${x} an ounce as markets pause"],
}
HEADLINE_QUESTIONS = {"up": "Does the news headline talk about price going up?",
                      "down": "Does the news headline talk about price going down?",
                      "flat": "Does the news headline talk about price staying stable?"}

FOMC = {  # stance -> (opening clauses, main clauses); a sentence is "<opening>, <main>." or a main clause alone
    "hawkish": (
        ["With inflation {elevated}", "Because price pressures remain broad-based",
         "Given a very tight labor market and rising wages", "As inflation expectations moved up in {month}",
         "Noting that core inflation had not eased as hoped"],
        ["the Committee judges that further increases in the target range will be appropriate",
         "the Committee decided to raise the target range for the federal funds rate to {r1} to {r2} percent",
         "participants agreed that a tighter policy stance would be needed to return inflation to 2 percent",
         "the Committee will continue reducing its holdings of Treasury securities at a faster pace",
         "several participants saw a case for additional policy firming at the {month} meeting",
         "members said they were prepared to raise rates by {bp} basis points if needed"]),
    "dovish": (
        ["In light of weakening labor market conditions", "With inflation running below the 2 percent objective",
         "As downside risks to employment increased", "Because growth slowed sharply in {month}",
         "Given tighter credit conditions for households and businesses"],
        ["the Committee decided to lower the target range for the federal funds rate to {r1} to {r2} percent",
         "the Committee will increase its purchases of Treasury securities to support the economy",
         "participants judged that policy could be eased in coming meetings",
         "the Committee sees scope for a cut in the policy rate at the {month} meeting",
         "the Committee expects to keep an accommodative stance until the recovery is complete",
         "several participants favored lowering the federal funds rate by {bp} basis points"]),
    "neutral": (
        ["At its meeting in {month}", "In the discussion of the economic outlook",
         "According to the minutes released on {month} {d}", "During the intermeeting period"],
        ["the Committee reviewed the staff's report on developments in financial markets",
         "participants discussed the structure of money markets",
         "the Board of Governors approved the appointment of {p1} to the advisory council",
         "staff presented briefings on the balance sheets of commercial banks",
         "the Committee's next scheduled meeting was set for {month} {d} and {d2}",
         "voting for the monetary policy action were {p1} and {p2}"]),
}
FOMC_FILLS = {"elevated": ["elevated", "well above target", "persistently high", "at a four-decade high"]}

NER = [  # (template, entity slots in order of appearance)
    ("{per}, chief executive of {org}, spoke at a conference in {loc}.", ["per", "org", "loc"]),
    ("{org} agreed to sell its stake to a fund based in {loc}.", ["org", "loc"]),
    ("{org} opened a new office in {loc}, to be led by {per}.", ["org", "loc", "per"]),
    ("Shares of {org} rose after {per} was named chairman of the board.", ["org", "per"]),
    ("The loan agreement between {org} and {org2} is governed by the laws of {loc}.", ["org", "org2", "loc"]),
    ("{per} and {per2} signed the agreement on behalf of {org}.", ["per", "per2", "org"]),
    ("{org} will move its headquarters from {loc} to {loc2} next year.", ["org", "loc", "loc2"]),
    ("Under the facility, {org} will lend EUR {a} mn to {org2}.", ["org", "org2"]),
    ("The borrower, {org}, has its registered office in {loc}.", ["org", "loc"]),
    ("{per} resigned as finance director of {org} on {d} {month}.", ["per", "org"]),
    ("Analysts in {loc} expect {org} to report higher margins, said {per}.", ["loc", "org", "per"]),
]

EDTSUM = [  # (article template, headline template)
    ("{co} said on {day} it would buy {co2} for EUR {a} mn in cash, expanding its business in {place}. "
     "The deal is expected to close in the {q} quarter.", "{co} to buy {co2} for EUR {a} mn"),
    ("{co} reported {q}-quarter net income of EUR {a} mn, up {p}% from a year earlier, helped by strong demand "
     "in {place}.", "{co} {q}-quarter profit rises {p}%"),
    ("{co} said on {day} that {per} will step down as chief executive at the end of the year. The board has "
     "started a search for a successor.", "{co} CEO {per} to step down"),
    ("{co} will close its factory in {place}, cutting {n} jobs, as orders for {product} keep falling, the "
     "company said on {day}.", "{co} to close {place} plant, cut {n} jobs"),
    ("{co} raised its full-year sales forecast on {day} after orders for {product} grew faster than expected "
     "in the {q} quarter.", "{co} raises full-year sales forecast"),
]

MONTHS = ["January", "March", "April", "June", "July", "September", "October", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
QUARTERS = ["first", "second", "third", "fourth"]


class Gen:
    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def pick(self, xs):
        return self.r.choice(xs)

    def fills(self) -> dict:
        r = self.r
        a = round(r.uniform(20, 400), 1)
        b = round(a * r.uniform(0.35, 0.8), 1)
        e = round(r.uniform(0.4, 3.0), 2)
        co, co2 = r.sample(COMPANIES, 2)
        place, place2 = r.sample(PLACES, 2)
        return {"co": co, "co2": co2, "a": a, "b": b, "e": e, "e2": round(e * r.uniform(0.4, 0.8), 2),
                "p": round(r.uniform(3, 45), 1), "y": r.choice([2019, 2021, 2022, 2023, 2024]),
                "q": r.choice(QUARTERS), "client": r.choice(CLIENTS), "product": r.choice(PRODUCTS),
                "n": r.choice([40, 75, 120, 180, 250, 400, 900, 1500]), "place": place, "place2": place2,
                "d": r.randint(2, 27), "month": r.choice(MONTHS), "day": r.choice(DAYS),
                "per": r.choice(PEOPLE)}


def balanced(labels: list[str], n: int, r: random.Random) -> list[str]:
    """n labels in near-equal shares, shuffled (so chance level is 1/len(labels) and majority-class guessing is)."""
    out = [labels[i % len(labels)] for i in range(n)]
    r.shuffle(out)
    return out


def fresh(make, seen: set, what: str):
    """A value of ``make()`` not seen before: duplicated items would make bootstrap intervals look tighter."""
    for _ in range(10_000):
        v = make()
        if v not in seen:
            seen.add(v)
            return v
    raise RuntimeError(f"{what}: templates cannot produce enough distinct items; add templates or fills")


def fpb_sentiment(g: Gen, n: int) -> list[dict]:
    rows, seen = [], set()
    for i, label in enumerate(balanced(["positive", "negative", "neutral"], n, g.r)):
        text = fresh(lambda: g.pick(FPB[label]).format(**g.fills()), seen, "fpb_sentiment")
        rows.append({"id": f"fpb-{i}", "text": text, "answer": label})
    return rows


def headline(g: Gen, n: int) -> list[dict]:
    rows, seen = [], set()

    def make():
        direction = g.pick(list(HEADLINES))
        asked = direction if yes == "yes" else g.pick([d for d in HEADLINE_QUESTIONS if d != direction])
        com = g.pick(COMMODITIES)
        text = g.pick(HEADLINES[direction]).format(
            Com=com.capitalize(), com=com, p=round(g.r.uniform(0.3, 3.5), 1), w=g.r.choice([2, 3, 4, 6, 8, 12]),
            x=f"{g.r.randint(1700, 2600) if com == 'gold' else g.r.randint(18, 34)}", g=g.r.randint(5, 40))
        return text, asked

    for i, yes in enumerate(balanced(["yes", "no"], n, g.r)):
        text, asked = fresh(make, seen, "headline")
        rows.append({"id": f"headline-{i}", "text": text, "question": HEADLINE_QUESTIONS[asked], "answer": yes})
    return rows


def fomc(g: Gen, n: int) -> list[dict]:
    rows, seen = [], set()

    def make():
        lo = g.r.choice([0.25, 0.5, 1.0, 1.5, 2.25, 3.0, 4.25, 5.0])
        p1, p2 = g.r.sample(FED_PEOPLE, 2)
        d = g.r.randint(1, 27)
        openings, mains = FOMC[label]
        main = g.pick(mains)
        tpl = f"{g.pick(openings)}, {main}." if g.r.random() < 0.75 else f"{main[0].upper()}{main[1:]}."
        return tpl.format(elevated=g.pick(FOMC_FILLS["elevated"]), r1=f"{lo:g}",
                                          r2=f"{lo + 0.25:g}", month=g.pick(MONTHS), d=d, d2=d + 1, p1=p1, p2=p2,
                                          bp=g.pick([25, 50]))

    for i, label in enumerate(balanced(["hawkish", "dovish", "neutral"], n, g.r)):
        text = fresh(make, seen, "fomc")
        rows.append({"id": f"fomc-{i}", "text": text, "answer": label})
    return rows


def fin_ner(g: Gen, n: int) -> list[dict]:
    rows = []
    types = {"per": "PER", "per2": "PER", "org": "ORG", "org2": "ORG", "loc": "LOC", "loc2": "LOC"}
    for i in range(n):
        tpl, slots = NER[i % len(NER)]
        per, per2 = g.r.sample(PEOPLE, 2)
        org, org2 = g.r.sample(COMPANIES, 2)
        loc, loc2 = g.r.sample(PLACES, 2)
        vals = {"per": per, "per2": per2, "org": org, "org2": org2, "loc": loc, "loc2": loc2,
                "a": g.r.randint(20, 900), "d": g.r.randint(2, 27), "month": g.pick(MONTHS)}
        rows.append({"id": f"ner-{i}", "text": tpl.format(**vals),
                     "answer": [{"text": vals[s], "type": types[s]} for s in slots]})
    g.r.shuffle(rows)
    return rows


def edtsum(g: Gen, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        art, head = EDTSUM[i % len(EDTSUM)]
        f = g.fills()
        rows.append({"id": f"edtsum-{i}", "text": art.format(**f), "answer": head.format(**f)})
    g.r.shuffle(rows)
    return rows


# --- general knowledge (forgetting) -------------------------------------------------------------------------------
# Membership questions: (question, members, non-members). Every option list has exactly one member.
MEMBERSHIP = [
    ("Which of these animals is a mammal?", ["dog", "horse", "whale", "cow", "elephant", "rabbit", "dolphin", "bat"],
     ["shark", "eagle", "frog", "snake", "trout", "lizard", "butterfly", "crocodile"]),
    ("Which of these animals is a bird?", ["eagle", "owl", "sparrow", "parrot", "penguin", "ostrich", "pigeon"],
     ["bat", "butterfly", "dog", "frog", "bee", "salmon", "cat"]),
    ("Which of these animals is an insect?", ["ant", "bee", "butterfly", "beetle", "mosquito", "grasshopper"],
     ["spider", "snail", "worm", "mouse", "crab", "sparrow"]),
    ("Which of these is a planet in our solar system?", ["Mars", "Venus", "Jupiter", "Saturn", "Mercury", "Neptune"],
     ["the Moon", "the Sun", "Sirius", "Polaris", "Halley's Comet"]),
    ("Which of these materials is a metal?", ["iron", "copper", "aluminium", "tin", "zinc", "steel"],
     ["wood", "glass", "plastic", "rubber", "paper", "cotton"]),
    ("Which of these is a gas at room temperature?", ["oxygen", "helium", "nitrogen", "carbon dioxide", "hydrogen"],
     ["iron", "salt", "sand", "wood", "ice", "sugar"]),
    ("Which of these is a fruit?", ["apple", "banana", "orange", "pear", "cherry", "grape", "mango"],
     ["carrot", "potato", "onion", "lettuce", "cabbage", "bread"]),
    ("Which of these is a renewable source of energy?", ["wind", "sunlight", "flowing water", "geothermal heat"],
     ["coal", "oil", "natural gas", "diesel"]),
    ("Which of these is a primary color of paint?", ["red", "blue", "yellow"], ["green", "purple", "orange", "brown"]),
    ("Which of these is an ocean?", ["the Pacific", "the Atlantic", "the Indian Ocean", "the Arctic Ocean"],
     ["the Sahara", "the Alps", "the Amazon", "the Nile", "the Himalayas"]),
]
# Fixed facts: (question, right answer, three wrong answers).
FACTS = [
    ("Which gas do plants take in from the air to make their food?", "carbon dioxide", ["oxygen", "helium", "neon"]),
    ("At what temperature does pure water boil at sea level?", "100 degrees Celsius",
     ["0 degrees Celsius", "50 degrees Celsius", "212 degrees Celsius"]),
    ("At what temperature does pure water freeze at sea level?", "0 degrees Celsius",
     ["100 degrees Celsius", "10 degrees Celsius", "-40 degrees Celsius"]),
    ("What does the heart pump through the body?", "blood", ["air", "food", "water"]),
    ("Which organ do people use to breathe?", "the lungs", ["the stomach", "the liver", "the skin"]),
    ("What is the closest star to Earth?", "the Sun", ["Sirius", "Polaris", "Vega"]),
    ("What is the largest planet in our solar system?", "Jupiter", ["Mars", "Earth", "Mercury"]),
    ("What natural satellite orbits the Earth?", "the Moon", ["the Sun", "Mars", "Venus"]),
    ("How long does it take the Earth to travel once around the Sun?", "one year", ["one day", "one week", "one hour"]),
    ("How long does it take the Earth to spin once on its axis?", "one day", ["one year", "one month", "one minute"]),
    ("What is ice made of?", "frozen water", ["frozen air", "salt", "sand"]),
    ("What force pulls objects toward the ground?", "gravity", ["magnetism", "friction", "wind"]),
    ("How many legs does an insect have?", "six", ["four", "eight", "ten"]),
    ("How many legs does a spider have?", "eight", ["six", "four", "ten"]),
    ("What do bees make?", "honey", ["milk", "silk", "wool"]),
    ("Which animal is known for having a long neck?", "the giraffe", ["the pig", "the mouse", "the frog"]),
    ("What do caterpillars turn into?", "butterflies", ["spiders", "frogs", "birds"]),
    ("What do tadpoles grow into?", "frogs", ["fish", "snakes", "birds"]),
    ("Which sense do people use their ears for?", "hearing", ["smell", "taste", "sight"]),
    ("Which sense do people use their eyes for?", "sight", ["hearing", "smell", "touch"]),
    ("Which part of a plant takes up water from the soil?", "the roots", ["the flowers", "the leaves", "the seeds"]),
    ("Which part of a plant makes most of its food using sunlight?", "the leaves", ["the roots", "the bark", "the seeds"]),
    ("What kind of energy does a solar panel capture?", "light from the Sun", ["sound", "wind", "heat from the soil"]),
    ("Which of these objects is attracted by a magnet?", "an iron nail", ["a wooden spoon", "a glass cup", "a paper cup"]),
    ("What happens to water when it is heated to its boiling point?", "it turns into steam",
     ["it turns into ice", "it turns into sand", "it disappears forever"]),
    ("What is the chemical formula of water?", "H2O", ["CO2", "O2", "NaCl"]),
    ("What is the main gas in the air we breathe?", "nitrogen", ["helium", "hydrogen", "neon"]),
    ("Which gas do people breathe in to stay alive?", "oxygen", ["carbon monoxide", "helium", "neon"]),
    ("What do we call animals that eat only plants?", "herbivores", ["carnivores", "predators", "parasites"]),
    ("What do we call animals that eat only meat?", "carnivores", ["herbivores", "plants", "fungi"]),
    ("Where does a fish get oxygen from?", "the water, through its gills", ["the sand", "its fins", "its scales"]),
    ("Which season comes after winter?", "spring", ["autumn", "summer", "winter"]),
    ("Which season is usually the hottest?", "summer", ["winter", "spring", "autumn"]),
    ("What is the boiling of a liquid into a gas called?", "evaporation", ["freezing", "melting", "condensation"]),
    ("What is the change from a solid to a liquid called?", "melting", ["freezing", "boiling", "condensation"]),
    ("What covers most of the Earth's surface?", "water", ["sand", "ice", "forest"]),
    ("Which tool is used to measure temperature?", "a thermometer", ["a ruler", "a scale", "a clock"]),
    ("Which tool is used to measure length?", "a ruler", ["a thermometer", "a stopwatch", "a compass"]),
    ("Which tool shows which direction is north?", "a compass", ["a thermometer", "a ruler", "a scale"]),
    ("What does a seed need to start growing?", "water and warmth", ["darkness and salt", "only sand", "only ice"]),
    ("What causes day and night on Earth?", "the Earth spinning on its axis",
     ["the Moon blocking the Sun", "clouds covering the sky", "the Sun turning off"]),
    ("Which part of the body protects the brain?", "the skull", ["the ribs", "the knee", "the elbow"]),
    ("What is the hardest natural substance?", "diamond", ["gold", "chalk", "ice"]),
    ("Which planet is known as the red planet?", "Mars", ["Venus", "Jupiter", "Neptune"]),
    ("What do people call frozen rain that falls as small balls of ice?", "hail", ["fog", "dew", "mist"]),
    ("How many days are there in a week?", "seven", ["five", "ten", "twelve"]),
    ("How many months are there in a year?", "twelve", ["ten", "six", "fifty-two"]),
    ("How many hours are there in a day?", "twenty-four", ["twelve", "sixty", "seven"]),
    ("How many minutes are there in an hour?", "sixty", ["twenty-four", "one hundred", "ten"]),
    ("Which continent is the largest by area?", "Asia", ["Australia", "Europe", "Antarctica"]),
]
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"),
            ("the United Kingdom", "London"), ("Russia", "Moscow"), ("China", "Beijing"), ("Egypt", "Cairo"),
            ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Greece", "Athens"), ("Portugal", "Lisbon"),
            ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Norway", "Oslo"),
            ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"), ("India", "New Delhi"), ("Kenya", "Nairobi"),
            ("South Korea", "Seoul"), ("Thailand", "Bangkok"), ("Turkey", "Ankara"), ("Peru", "Lima"),
            ("Belgium", "Brussels"), ("Switzerland", "Bern"), ("Hungary", "Budapest"), ("Cuba", "Havana"),
            ("the United States", "Washington, D.C.")]
CURRENCIES = [("Japan", "yen", ["Japanese yen"]), ("the United Kingdom", "pound", ["pound sterling", "British pound"]),
              ("the United States", "dollar", ["US dollar", "United States dollar"]),
              ("India", "rupee", ["Indian rupee"]), ("Russia", "ruble", ["rouble", "Russian ruble"]),
              ("Mexico", "peso", ["Mexican peso"]), ("Switzerland", "franc", ["Swiss franc"]),
              ("China", "yuan", ["renminbi", "Chinese yuan"]), ("Brazil", "real", ["Brazilian real"]),
              ("South Korea", "won", ["South Korean won"])]
LANGUAGES = [("Brazil", "Portuguese"), ("Mexico", "Spanish"), ("France", "French"), ("Germany", "German"),
             ("Italy", "Italian"), ("Japan", "Japanese"), ("China", "Chinese", ["Mandarin", "Mandarin Chinese"]),
             ("Russia", "Russian"), ("Greece", "Greek"), ("Egypt", "Arabic"), ("Portugal", "Portuguese"),
             ("Argentina", "Spanish")]
QA_FACTS = [
    ("who wrote romeo and juliet", ["William Shakespeare", "Shakespeare"]),
    ("who painted the mona lisa", ["Leonardo da Vinci", "da Vinci", "Leonardo"]),
    ("who developed the theory of relativity", ["Albert Einstein", "Einstein"]),
    ("who was the first person to walk on the moon", ["Neil Armstrong", "Armstrong"]),
    ("which planet is known as the red planet", ["Mars"]),
    ("what is the largest planet in the solar system", ["Jupiter"]),
    ("what is the largest ocean on earth", ["Pacific Ocean", "Pacific", "the Pacific"]),
    ("what is the longest river in south america", ["Amazon", "Amazon River"]),
    ("what is the tallest mountain in the world", ["Mount Everest", "Everest"]),
    ("what is the chemical symbol for water", ["H2O"]),
    ("what is the chemical symbol for oxygen", ["O"]),
    ("what gas do plants release during photosynthesis", ["oxygen", "O2"]),
    ("how many legs does a spider have", ["eight", "8"]),
    ("how many legs does an insect have", ["six", "6"]),
    ("how many days are there in a leap year", ["366"]),
    ("how many continents are there on earth", ["seven", "7"]),
    ("what color is the sky on a clear day", ["blue"]),
    ("what color are ripe bananas", ["yellow"]),
    ("what is the opposite of hot", ["cold"]),
    ("what is the opposite of up", ["down"]),
    ("what is the freezing point of water in degrees celsius", ["0", "zero", "0 degrees", "0 degrees Celsius"]),
    ("what is the boiling point of water in degrees celsius", ["100", "100 degrees", "100 degrees Celsius"]),
    ("which animal is known as the king of the jungle", ["lion", "the lion"]),
    ("what is the largest mammal on earth", ["blue whale", "the blue whale", "whale"]),
    ("what do bees make", ["honey"]),
    ("what is the main language spoken in the united states", ["English"]),
    ("which star is at the center of our solar system", ["the Sun", "Sun"]),
    ("who is the author of the wealth of nations", ["Adam Smith"]),
    ("how many sides does a triangle have", ["three", "3"]),
    ("how many sides does a square have", ["four", "4"]),
    ("how many sides does a hexagon have", ["six", "6"]),
    ("how many wheels does a bicycle have", ["two", "2"]),
    ("what color is grass", ["green"]),
    ("what color is snow", ["white"]),
    ("what is the plural of mouse", ["mice"]),
    ("what is the plural of child", ["children"]),
    ("what is the opposite of big", ["small", "little"]),
    ("what is the opposite of day", ["night"]),
    ("what is the opposite of wet", ["dry"]),
    ("what is the largest desert in africa", ["Sahara", "the Sahara", "Sahara Desert"]),
    ("what is the longest river in africa", ["Nile", "the Nile", "Nile River"]),
    ("which planet do we live on", ["Earth", "the Earth"]),
    ("what is the hardest natural substance", ["diamond", "diamonds"]),
    ("what do cows drink", ["water"]),
    ("what is frozen water called", ["ice"]),
    ("what gas do humans need to breathe", ["oxygen", "O2"]),
    ("what organ pumps blood through the body", ["heart", "the heart"]),
    ("on which continent is egypt", ["Africa"]),
    ("on which continent is france", ["Europe"]),
    ("on which continent is japan", ["Asia"]),
    ("on which continent is brazil", ["South America"]),
    ("on which continent is canada", ["North America"]),
    ("what is the capital city of the state of new york", ["Albany"]),
    ("how many players are on a soccer team on the field", ["eleven", "11"]),
    ("how many days are there in a week", ["seven", "7"]),
    ("how many hours are there in a day", ["twenty-four", "24"]),
    ("how many months are there in a year", ["twelve", "12"]),
    ("how many minutes are there in an hour", ["sixty", "60"]),
]
WORD_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
                11: "eleven", 12: "twelve", 13: "thirteen", 14: "fourteen", 15: "fifteen", 16: "sixteen",
                17: "seventeen", 18: "eighteen", 19: "nineteen", 20: "twenty"}


def _mc(g: Gen, question: str, right: str, wrong: list[str], k: int = 4) -> tuple[list[str], str]:
    opts = [right] + g.r.sample(wrong, k - 1)
    g.r.shuffle(opts)
    return opts, "ABCDE"[opts.index(right)]


def arc_easy(g: Gen, n: int) -> list[dict]:
    items = []
    for q, right, wrong in FACTS:
        items.append((q, right, wrong))
    for q, members, others in MEMBERSHIP:
        items += [(q, m, others) for m in members]
    for country, city in CAPITALS:
        others = [c for _, c in CAPITALS if c != city]
        items.append((f"What is the capital city of {country}?", city, others))
    while len(items) < n:
        a, b = g.r.randint(2, 12), g.r.randint(2, 9)
        if g.r.random() < 0.5:
            q, right = f"What is {a} plus {b}?", a + b
        else:
            q, right = f"What is {a} times {b}?", a * b
        wrong = sorted({right + d for d in (-3, -2, -1, 1, 2, 3, 10)} - {right})
        if q in {it[0] for it in items}:
            continue
        items.append((q, str(right), [str(w) for w in wrong]))
    rows = []
    for i, (q, right, wrong) in enumerate(items[:n]):
        choices, letter = _mc(g, q, right, wrong)
        rows.append({"id": f"arc-{i}", "question": q, "choices": choices, "answer": letter})
    g.r.shuffle(rows)
    return rows


def nq_open(g: Gen, n: int) -> list[dict]:
    items = [(q, a) for q, a in QA_FACTS]
    for country, city in CAPITALS:
        items.append((f"what is the capital of {country.lower()}", [city] + (["Washington", "Washington DC"]
                                                                             if city.startswith("Washington") else [])))
    for country, cur, alias in CURRENCIES:
        items.append((f"what is the currency of {country.lower()}", [cur] + alias))
    for row in LANGUAGES:
        country, lang = row[0], row[1]
        items.append((f"what is the main language spoken in {country.lower()}", [lang] + (row[2] if len(row) > 2 else [])))
    seen = {q for q, _ in items}
    while len(items) < n:
        a, b = g.r.randint(2, 12), g.r.randint(2, 9)
        kind = g.r.randint(0, 2)
        if kind == 0:
            q, v = f"what is {a} plus {b}", a + b
        elif kind == 1:
            q, v = f"what is {a} times {b}", a * b
        else:
            q, v = f"what is {a + b} minus {b}", a
        if q in seen:
            continue
        seen.add(q)
        items.append((q, [str(v)] + ([WORD_NUMBERS[v]] if v in WORD_NUMBERS else [])))
    rows = [{"id": f"nq-{i}", "question": q, "answer": a} for i, (q, a) in enumerate(items[:n])]
    g.r.shuffle(rows)
    return rows


# --- finance knowledge (novel concepts) and CFA-style reasoning --------------------------------------------------
FIN_TERMS = {  # term -> short definition, phrased only here
    "a dividend": "a payment a company makes to its shareholders out of profits",
    "a bond": "a loan to a borrower that pays interest and returns the principal at maturity",
    "a share of stock": "a unit of ownership in a company",
    "inflation": "a general rise in the price level over time",
    "a recession": "a broad decline in economic activity lasting months",
    "liquidity": "how quickly an asset can be turned into cash without a big loss",
    "diversification": "spreading money across many assets to reduce risk",
    "a budget deficit": "government spending that exceeds government revenue",
    "market capitalization": "the share price times the number of shares outstanding",
    "a stock exchange": "a market where shares are bought and sold",
    "collateral": "an asset pledged to a lender to secure a loan",
    "an interest rate": "the price of borrowing money, stated as a percent per year",
    "a mortgage": "a loan used to buy property and secured by that property",
    "revenue": "the money a company receives from selling goods and services",
    "a balance sheet": "a statement of assets, liabilities and equity at one date",
    "depreciation": "spreading the cost of a long-lived asset over its useful life",
    "an index fund": "a fund that tracks the holdings of a market index",
    "a central bank": "the institution that sets monetary policy and issues currency",
    "unemployment": "the share of the labor force that is looking for work but has none",
    "a tariff": "a tax on imported goods",
}
FIN_FACTS = [
    ("When market interest rates rise, the prices of existing fixed-rate bonds usually", "fall",
     ["rise", "stay exactly the same", "double"]),
    ("A company that earns more revenue than its total costs makes a", "profit", ["loss", "deficit", "write-off"]),
    ("Assets minus liabilities equals", "equity", ["revenue", "expenses", "cash flow"]),
    ("Which of these is usually the riskiest investment?", "shares of a small start-up",
     ["a government savings bond", "an insured bank deposit", "a short-term treasury bill"]),
    ("A central bank that wants to fight high inflation will most likely", "raise interest rates",
     ["cut interest rates", "print more money", "lower bank reserve needs"]),
    ("Money kept in a savings account earns", "interest", ["dividends", "rent", "royalties"]),
    ("If prices rise while your salary stays the same, your purchasing power", "falls",
     ["rises", "stays the same", "doubles"]),
    ("The person who lends money is called the", "creditor", ["debtor", "borrower", "guarantor"]),
    ("A period when stock prices fall by 20% or more is usually called a", "bear market",
     ["bull market", "boom", "rally"]),
    ("A period of rising stock prices is usually called a", "bull market", ["bear market", "recession", "crash"]),
    ("Which statement shows a company's revenue and expenses over a period?", "the income statement",
     ["the balance sheet", "the share register", "the articles of association"]),
    ("Buying many different assets to reduce risk is called", "diversification",
     ["leverage", "speculation", "arbitrage"]),
    ("Borrowing money to increase the size of an investment is called", "leverage",
     ["diversification", "hedging", "saving"]),
    ("Interest that is earned on earlier interest is called", "compound interest",
     ["simple interest", "principal", "a fee"]),
    ("A tax on goods brought into a country is called", "a tariff", ["a dividend", "a subsidy", "a coupon"]),
]


def mmlu_finance(g: Gen, n: int) -> list[dict]:
    items = []
    terms = list(FIN_TERMS)
    for t in terms:  # term -> definition, and definition -> term
        wrong = [FIN_TERMS[o] for o in terms if o != t]
        items.append((f"Which of the following best describes {t}?", FIN_TERMS[t], wrong))
        items.append((f"Which term means {FIN_TERMS[t]}?", t, [o for o in terms if o != t]))
    items += FIN_FACTS
    kinds = ["simple", "perpetuity", "pe", "growth", "margin"]
    k = 0
    seen = {q for q, _, _ in items}
    while len(items) < n:
        kind = kinds[k % len(kinds)]
        k += 1
        if k > 100_000:
            raise RuntimeError("mmlu_finance: too few distinct templated questions for the requested size")
        if kind == "simple":
            p, r, y = g.r.choice([1000, 2000, 4000, 5000, 8000, 10000]), g.r.choice([2, 3, 4, 5, 6, 8]), g.r.choice([2, 3, 4, 5])
            v = p * r * y // 100
            q = f"Simple interest on ${p:,} at {r}% per year for {y} years is:"
            right, wrong = f"${v:,}", [f"${v * 2:,}", f"${p * r // 100:,}", f"${v + p:,}"]
        elif kind == "perpetuity":
            c, r = g.r.choice([40, 80, 120, 160, 200, 240, 280, 320]), g.r.choice([4, 5, 8, 10])
            q = f"A perpetuity pays ${c} every year forever and the discount rate is {r}%. Its present value is:"
            v = c * 100 // r
            right, wrong = f"${v:,}", [f"${c * r:,}", f"${v // 2:,}", f"${v * 2:,}"]
        elif kind == "pe":
            eps, pe = g.r.choice([2, 3, 4, 5]), g.r.choice([10, 12, 15, 20])
            q = f"A stock trades at ${eps * pe} and earns ${eps} per share. Its price-to-earnings ratio is:"
            right, wrong = str(pe), [str(pe * 2), str(eps), str(pe + eps)]
        elif kind == "growth":
            a, p = g.r.choice([100, 200, 400, 500]), g.r.choice([10, 20, 25, 50])
            q = f"Sales grow from ${a} million to ${a + a * p // 100} million. The growth rate is:"
            right, wrong = f"{p}%", [f"{p * 2}%", f"{100 - p}%", f"{p // 2}%"]
        else:
            rev, m = g.r.choice([200, 400, 500, 800]), g.r.choice([10, 20, 25, 40])
            q = f"Revenue is ${rev} million and net income is ${rev * m // 100} million. The net profit margin is:"
            right, wrong = f"{m}%", [f"{100 - m}%", f"{m * 2}%", f"{m // 2}%"]
        wrong = [w for w in dict.fromkeys(wrong) if w != right]
        if q in seen or len(wrong) < 3:
            continue
        seen.add(q)
        items.append((q, right, wrong))
    rows = []
    for i, (q, right, wrong) in enumerate(items[:n]):
        choices, letter = _mc(g, q, right, [w for w in dict.fromkeys(wrong) if w != right])
        rows.append({"id": f"mmluf-{i}", "question": q, "choices": choices, "answer": letter})
    g.r.shuffle(rows)
    return rows


CFA_FIXED = [
    ("A bond's price is most sensitive to changes in yield when it has the:",
     "longest maturity and lowest coupon", ["shortest maturity and highest coupon", "shortest maturity and lowest coupon"]),
    ("When a bond's coupon rate is above its yield to maturity, the bond trades at:",
     "a premium to par", ["a discount to par", "exactly par"]),
    ("Compared with a portfolio of one stock, a portfolio of twenty stocks in different industries most likely has:",
     "lower unsystematic risk", ["higher unsystematic risk", "higher expected return by construction"]),
    ("A zero-coupon bond's Macaulay duration is closest to its:",
     "time to maturity", ["coupon rate", "yield to maturity"]),
    ("If a company's inventory turnover rises while sales stay flat, its average inventory has most likely:",
     "decreased", ["increased", "stayed the same"]),
    ("An increase in the discount rate, all else equal, makes the present value of future cash flows:",
     "smaller", ["larger", "unchanged"]),
    ("The standard deviation of a risk-free asset's return is:", "zero", ["one", "equal to the market's"]),
    ("A call option gives its holder the right to:", "buy the underlying at the strike price",
     ["sell the underlying at the strike price", "receive the underlying's dividends"]),
    ("A put option gives its holder the right to:", "sell the underlying at the strike price",
     ["buy the underlying at the strike price", "vote at the company's meetings"]),
    ("Under the accrual basis of accounting, revenue is recognized when it is:", "earned",
     ["received in cash", "budgeted"]),
]


def cfa_easy(g: Gen, n: int) -> list[dict]:
    items = list(CFA_FIXED)
    seen = {q for q, _, _ in items}
    k = 0
    while len(items) < n:
        kind = k % 6
        k += 1
        if k > 100_000:
            raise RuntimeError("cfa_easy: too few distinct templated questions for the requested size")
        if kind == 0:
            nom, inf = g.r.randint(3, 9), g.r.choice([1, 2, 3, 4])
            real = (1 + nom / 100) / (1 + inf / 100) - 1
            q = (f"If the nominal risk-free rate is {nom}% and expected inflation is {inf}%, the real risk-free rate "
                 f"is closest to:")
            right, wrong = f"{100 * real:.1f}%", [f"{nom + inf:.1f}%", f"{nom * inf:.1f}%"]
        elif kind == 1:
            pv, r, y = g.r.choice([1000, 2000, 5000]), g.r.choice([5, 8, 10]), g.r.choice([2, 3])
            fv = pv * (1 + r / 100) ** y
            q = f"An investment of ${pv:,} earning {r}% compounded annually is worth after {y} years closest to:"
            right, wrong = f"${fv:,.0f}", [f"${pv * (1 + r * y / 100) - pv * r / 200:,.0f}", f"${pv * (1 + r / 100):,.0f}"]
        elif kind == 2:
            p0, p1, d = g.r.choice([40, 50, 80]), g.r.choice([44, 55, 60, 88]), g.r.choice([1, 2, 3])
            hpr = (p1 - p0 + d) / p0
            q = (f"A share bought for ${p0} pays a ${d} dividend and is sold a year later for ${p1}. The holding "
                 f"period return is closest to:")
            right, wrong = f"{100 * hpr:.1f}%", [f"{100 * (p1 - p0) / p0 - 1.3:.1f}%", f"{100 * (p1 - p0 + d) / p1 + 4.0:.1f}%"]
        elif kind == 3:
            w, ra, rb = g.r.choice([0.2, 0.4, 0.6, 0.8]), g.r.choice([4, 6, 8]), g.r.choice([10, 12, 14])
            er = w * ra + (1 - w) * rb
            q = (f"A portfolio holds {w:.0%} in asset A (expected return {ra}%) and the rest in asset B (expected "
                 f"return {rb}%). The portfolio's expected return is closest to:")
            right, wrong = f"{er:.1f}%", [f"{(ra + rb) / 2 + 1.5:.1f}%", f"{(1 - w) * ra + w * rb + 0.7:.1f}%"]
        elif kind == 4:
            rp, rf, sd = g.r.choice([8, 10, 12]), g.r.choice([2, 3, 4]), g.r.choice([10, 15, 20])
            q = (f"A fund returned {rp}% with a standard deviation of {sd}% when the risk-free rate was {rf}%. Its "
                 f"Sharpe ratio is closest to:")
            right, wrong = f"{(rp - rf) / sd:.2f}", [f"{rp / sd:.2f}", f"{(rp + rf) / sd + 0.1:.2f}"]
        else:
            ca, cl = g.r.choice([300, 450, 600, 720, 900, 960]), g.r.choice([150, 200, 240, 300])
            q = f"A firm has current assets of ${ca} million and current liabilities of ${cl} million. Its current ratio is closest to:"
            right, wrong = f"{ca / cl:.2f}", [f"{cl / ca:.2f}", f"{(ca - cl) / cl + 0.3:.2f}"]
        if q in seen or right in wrong or len(set(wrong)) < 2:
            continue
        seen.add(q)
        items.append((q, right, wrong))
    rows = []
    for i, (q, right, wrong) in enumerate(items[:n]):
        choices = [right] + wrong[:2]
        g.r.shuffle(choices)
        gold = choices.index(right)
        letter = "ABC"[gold]
        query = q + "\n" + "\n".join(f"{'ABC'[j]}. {c}" for j, c in enumerate(choices))
        rows.append({"id": f"cfa-{i}", "query": query, "text": q, "choices": choices, "gold": gold, "answer": letter})
    g.r.shuffle(rows)
    return rows


# --- instruction following ----------------------------------------------------------------------------------------
IF_TOPICS = ["a savings account", "a credit card", "the stock market", "a household budget", "an annual report",
             "a pension fund", "exchange rates", "a small business loan", "an emergency fund", "insurance",
             "online banking", "a company's shareholders", "a car loan", "paying taxes", "a job interview",
             "a grocery list", "a weekend trip", "learning to cook", "a public library", "a bicycle"]
IF_RULES = [  # (instruction template, rules builder)
    ("Explain {t} in exactly {n} bullet points.", lambda n, w: [{"type": "bullet_count", "n": n}]),
    ("Describe {t} in fewer than {m} words.", lambda n, w: [{"type": "max_words", "n": 10 * n + 20}]),
    ("Write one short sentence about {t} using only lowercase letters.", lambda n, w: [{"type": "lowercase"}]),
    ("WRITE ONE SHORT SENTENCE ABOUT {T} IN CAPITAL LETTERS ONLY.", lambda n, w: [{"type": "uppercase"}]),
    ("Explain {t} without using any commas.", lambda n, w: [{"type": "no_commas"}]),
    ("Describe {t} and include the word '{w}' in your answer.", lambda n, w: [{"type": "include_words", "words": [w]}]),
    ("Begin your reply with the word 'Yes' and say whether {t} can be useful.",
     lambda n, w: [{"type": "starts_with", "text": "Yes"}]),
    ("Explain {t} and end your reply with the words 'Thank you.'", lambda n, w: [{"type": "ends_with", "text": "Thank you."}]),
    ("Return only a JSON object with the keys \"topic\" and \"summary\" about {t}.",
     lambda n, w: [{"type": "json_format"}, {"type": "include_words", "words": ["topic", "summary"]}]),
    ("Write at least {k} words about {t}.", lambda n, w: [{"type": "min_words", "n": 5 * n + 15}]),
    ("Describe {t} in fewer than {m} words and include the word '{w}'.",
     lambda n, w: [{"type": "max_words", "n": 10 * n + 20}, {"type": "include_words", "words": [w]}]),
    ("Explain {t} without using the word '{w}'.", lambda n, w: [{"type": "exclude_words", "words": [w]}]),
]
IF_WORDS = ["money", "bank", "plan", "safe", "cost", "time"]


def instruction_following(g: Gen, n: int) -> list[dict]:
    rows, seen = [], set()
    for i in range(n):
        tpl, rules = IF_RULES[i % len(IF_RULES)]

        drawn: dict = {}

        def make():
            t, drawn["k"], drawn["w"] = g.pick(IF_TOPICS), g.r.choice([2, 3, 4]), g.pick(IF_WORDS)
            return tpl.format(t=t, T=t.upper(), n=drawn["k"], m=10 * drawn["k"] + 20, k=5 * drawn["k"] + 15,
                              w=drawn["w"])

        text = fresh(make, seen, "instruction_following")
        k, w = drawn["k"], drawn["w"]
        rows.append({"id": f"if-{i}", "instruction": text, "rules": rules(k, w)})
    g.r.shuffle(rows)
    return rows


# --- novel finance tasks ------------------------------------------------------------------------------------------
def tatqa_numeric(g: Gen, n: int) -> list[dict]:
    rows = []
    items = ["Revenue", "Net income", "Operating income", "Total assets", "Cash and equivalents", "Long-term debt"]
    for i in range(n):
        item = items[i % len(items)]
        y1, y0 = 2023, 2022
        a = round(g.r.uniform(100, 2000), 1)
        b = round(a * g.r.choice([0.8, 0.9, 1.1, 1.25, 1.5]), 1)
        kind = i % 3
        ctx = f"{item} | {y1}: {b:,.1f} | {y0}: {a:,.1f}"
        if kind == 0:
            q, ans = f"What is the change in {item.lower()} from {y0} to {y1} (in millions)?", f"{b - a:.1f}"
        elif kind == 1:
            q, ans = f"What is the percentage change in {item.lower()} from {y0} to {y1}?", f"{100 * (b - a) / a:.1f}%"
        else:
            q, ans = f"What is the average {item.lower()} over {y0} and {y1}?", f"{(a + b) / 2:.2f}"
        rows.append({"id": f"tat-{i}", "context": ctx, "question": q, "answer": ans})
    return rows


def credit_scoring(g: Gen, n: int) -> list[dict]:
    good = {"Checking account": ["above 200", "none"], "Credit history": ["all existing credits paid back duly"],
            "Employment": ["7+ years", "4-7 years"], "Housing": ["own"]}
    bad = {"Checking account": ["negative balance"], "Credit history": ["critical account, other credits existing",
                                                                          "delay in paying off in the past"],
           "Employment": ["unemployed", "below 1 year"], "Housing": ["rent", "for free"]}
    rows = []
    for i, label in enumerate(balanced(["good", "bad"], n, g.r)):
        f = good if label == "good" else bad
        amount = g.r.randint(5, 30) * 100 if label == "good" else g.r.randint(90, 200) * 100
        months = g.r.choice([6, 9, 12, 18]) if label == "good" else g.r.choice([36, 48, 60])
        text = (f"Checking account: {g.pick(f['Checking account'])}. Credit history: {g.pick(f['Credit history'])}. "
                f"Purpose: {g.pick(['new car', 'furniture', 'repairs', 'education', 'business'])}. "
                f"Amount: {amount:,}. Duration: {months} months. Employment: {g.pick(f['Employment'])}. "
                f"Age: {g.r.randint(22, 60)}. Housing: {g.pick(f['Housing'])}.")
        rows.append({"id": f"credit-{i}", "text": text, "answer": label})
    return rows


SETS = {"fpb_sentiment": fpb_sentiment, "headline": headline, "fomc": fomc, "fin_ner": fin_ner,
        "edtsum_headlines": edtsum, "arc_easy": arc_easy, "nq_open": nq_open, "mmlu_finance": mmlu_finance,
        "cfa_easy": cfa_easy, "instruction_following": instruction_following, "tatqa_numeric": tatqa_numeric,
        "credit_scoring": credit_scoring}


def build() -> dict[str, list[dict]]:
    """Every set, each from its own seeded generator (changing one set never reshuffles another)."""
    return {name: fn(Gen(SEED + i), SIZES[name]) for i, (name, fn) in enumerate(SETS.items())}


def write(name: str, rows: list[dict]) -> None:
    path = OUT / f"{name}.jsonl"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    sets = build()
    for name, rows in sets.items():
        if len(rows) != SIZES[name]:
            raise SystemExit(f"{name}: built {len(rows)} items, expected {SIZES[name]}")
        write(name, rows)
    print("wrote", ", ".join(f"{k} {len(v)}" for k, v in sets.items()))

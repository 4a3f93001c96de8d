"""Regenerate the shipped FinTrain sample data (deterministic): python samples/fintrain/generate.py

Four sources, written for this project: finance CPT text (company reports, central-bank statements, market news,
a glossary), general CPT text, finance instruction data (chat messages) and general instruction data
(prompt/response fields, to exercise both field mappings).

The finance instructions cover the same task TYPES as the similar FinEval sets (sentence sentiment, yes/no
questions on commodity headlines, central-bank stance, named entities as "name, TYPE" lines, multiple-choice
reasoning answered as [[X]]) but are held out from them by ENTITY and by TEMPLATE: every company, person, place
and commodity name and every sentence template here differs from samples/fineval/generate.py's, so the data
stage's 13-gram decontamination finds nothing to drop and FinEval measures transfer, not recall
(tests/test_sample_data.py checks both).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent
SEED = 20250107

SIZES = {"finance_cpt": 1800, "general_cpt": 700, "finance_it": 1700, "general_it": 600}  # CPT >= IT: the
# recipe cuts CPT to as many examples as IT

# --- entities used ONLY by the training data ----------------------------------------------------------------------
COMPANIES = ["Northwind Bank", "Aster Metals", "Bluepeak Energy", "Cobalt Logistics", "Harbor Retail Group",
             "Ironvale Pharma", "Juniper Software", "Kestrel Airlines", "Lumen Utilities", "Meridian Insurance",
             "Orchid Foods", "Pinecrest REIT", "Quartz Semiconductors", "Redwood Telecom", "Summit Capital",
             "Tidewater Chemicals", "Umbra Media", "Vantage Motors", "Willow Health", "Xeno Robotics",
             "Yellowstone Rail", "Zenith Apparel", "Bramble Biotech", "Copperleaf Homes"]
SECTORS = ["banking", "mining", "energy", "logistics", "retail", "pharmaceuticals", "software", "airlines",
           "utilities", "insurance", "consumer staples", "real estate", "semiconductors", "telecom",
           "asset management", "chemicals", "media", "automotive", "health care", "robotics", "railways",
           "apparel", "biotechnology", "homebuilding"]
PEOPLE = ["Maria Chen", "David Okafor", "Priya Nair", "Lars Eriksen", "Sofia Rossi", "Kenji Watanabe",
          "Amara Mensah", "Lucas Moreau", "Elena Petrova", "Rafael Ortiz", "Hannah Schmidt", "Omar Haddad",
          "Grace Liu", "Tomasz Nowak", "Isabel Duarte", "Felix Wagner"]
PLACES = ["Lyon", "Porto", "Valencia", "Bologna", "Seville", "Marseille", "Krakow", "Brno", "Graz", "Basel",
          "Leeds", "Glasgow", "Bilbao", "Turin", "Nice"]
COMMODITIES = ["copper", "crude oil", "wheat", "platinum", "coffee", "cocoa"]
BANK_NAMES = ["the Reserve Board", "the Monetary Council", "the central bank's rate-setting panel"]


def entity_names() -> dict[str, list[str]]:
    return {"companies": COMPANIES, "people": PEOPLE, "places": PLACES, "commodities": COMMODITIES}


# --- finance glossary (phrased only here) -------------------------------------------------------------------------
CONCEPTS = {
    "EBITDA": "earnings before interest, taxes, depreciation and amortization, a proxy for operating cash generation",
    "free cash flow": "operating cash flow minus capital expenditures, the cash available to investors",
    "duration": "the sensitivity of a bond's price to changes in interest rates, measured in years",
    "price-to-earnings ratio": "share price divided by earnings per share, a valuation multiple",
    "net interest margin": "net interest income divided by average earning assets, a core bank profitability metric",
    "beta": "a stock's sensitivity to market movements relative to a benchmark index",
    "yield curve": "the plot of yields across maturities for bonds of equal credit quality",
    "return on equity": "net income divided by average shareholders' equity",
    "goodwill": "the premium paid in an acquisition above the fair value of the net assets acquired",
    "quantitative easing": "large-scale central-bank purchases of securities to lower long-term yields",
    "credit spread": "the extra yield a risky bond pays over a government bond of the same maturity",
    "operating leverage": "the share of fixed costs in a firm's cost base, which amplifies profit swings",
    "dividend payout ratio": "dividends paid as a fraction of net income",
    "enterprise value": "market value of equity plus net debt, the value of the whole business",
    "amortization": "the gradual write-down of an intangible asset or the repayment of a loan over time",
    "hedging": "taking an offsetting position to reduce exposure to a price move",
}
GENERAL_TOPICS = [
    ("photosynthesis", "Plants convert light energy into chemical energy, storing it as glucose while releasing oxygen."),
    ("the water cycle", "Water evaporates, condenses into clouds and returns as precipitation, moving between land, sea and air."),
    ("bread baking", "Yeast ferments sugars in dough, producing gas that makes the loaf rise before the oven sets its crumb."),
    ("plate tectonics", "Earth's lithosphere is split into plates whose slow motion builds mountains and triggers earthquakes."),
    ("the printing press", "Movable type made books cheaper, spreading literacy and ideas across Europe in the fifteenth century."),
    ("vaccines", "Vaccines train the immune system to recognise a pathogen without causing the disease itself."),
    ("migratory birds", "Many birds travel thousands of kilometres each year, navigating by the sun, stars and magnetic field."),
    ("chess openings", "Strong openings develop pieces quickly, control the centre and keep the king safe."),
    ("volcanoes", "Magma rising through the crust erupts as lava, ash and gas, building new land over time."),
    ("honeybees", "Worker bees communicate the direction of flowers to their hive mates with a waggle dance."),
    ("tides", "The pull of the Moon and the Sun raises bulges in the oceans, so coasts see two high tides most days."),
    ("rainbows", "Sunlight bends and reflects inside raindrops, splitting into a band of colours opposite the Sun."),
    ("coral reefs", "Tiny animals called polyps build reefs from calcium carbonate, sheltering a quarter of marine species."),
    ("the human skeleton", "Bones support the body, protect organs and store minerals, and joints let them move."),
    ("electric circuits", "Current flows only around a closed loop, pushed by a voltage through wires and components."),
    ("clouds", "Clouds form when rising air cools and its water vapour condenses on tiny particles of dust."),
]

# --- templates used ONLY by the training data ---------------------------------------------------------------------
SENTIMENT = {
    "positive": ["{co} posted quarterly revenue of USD {m} million, up {p} percent on the prior year.",
                 "Margins at {co} widened to {mg} percent as cost savings took hold.",
                 "{co} secured a multi-year contract valued at USD {m} million with a customer in {place}.",
                 "{co} lifted its annual profit target after a record {q} quarter.",
                 "Analysts upgraded {co} after cash flow beat expectations by a wide margin."],
    "negative": ["{co}'s quarterly revenue slid {p} percent to USD {m} million on weak demand.",
                 "Margins at {co} narrowed to {mg} percent as costs climbed.",
                 "{co} lost its largest customer in {place} and withdrew its forecast.",
                 "{co} booked a USD {m} million impairment and suspended its dividend.",
                 "Rating agencies downgraded {co} after its debt rose sharply."],
    "neutral": ["{co} will hold a conference call for analysts on {weekday}.",
                "{co} has offices in {place} and sells mainly to {sector} customers.",
                "{co} named a new auditor for the coming financial year.",
                "The next board meeting of {co} is scheduled for {weekday}.",
                "{co} reports its results in US dollars."],
}
SENTIMENT_ASKS = ["Classify the sentiment of this sentence from a company report as positive, negative or neutral.",
                  "Is the tone of the following financial statement positive, negative or neutral? Reply with one word.",
                  "Read the sentence and label its sentiment for an investor (positive, negative or neutral)."]

COMMODITY_NEWS = {
    "up": ["{C} surges on supply worries", "{C} hits {w}-month peak as stockpiles shrink",
           "{C} advances {p} percent in early Asian trade", "Buyers push {c} higher for a fourth day"],
    "down": ["{C} sinks on demand fears", "{C} touches {w}-month trough as stockpiles swell",
             "{C} retreats {p} percent in early Asian trade", "Sellers drag {c} lower for a fourth day"],
    "flat": ["{C} treads water before inventory report", "{C} trades sideways in thin volume",
             "{C} unchanged as traders wait for demand signals"],
}
COMMODITY_ASKS = {"up": ["Does this headline report a price increase?", "Is this headline about the price rising?"],
                  "down": ["Does this headline report a price decrease?", "Is this headline about the price falling?"],
                  "flat": ["Does this headline say the price held steady?", "Is this headline about an unchanged price?"]}

POLICY = {
    "hawkish": ["{bank} raised the cash rate by {bp} basis points to {r} percent, citing strong wage growth.",
                "{bank} warned that rates may need to go higher to bring inflation back to target.",
                "Board members agreed that policy should stay restrictive for longer.",
                "{bank} will shrink its bond portfolio faster to tighten financial conditions.",
                "Members saw inflation risks tilted to the upside and signalled more hikes."],
    "dovish": ["{bank} cut the cash rate by {bp} basis points to {r} percent as unemployment rose.",
               "{bank} said it could lower rates further if the economy keeps slowing.",
               "Board members agreed that policy can become less restrictive soon.",
               "{bank} restarted bond purchases to ease financial conditions.",
               "Members saw inflation falling below target and signalled more cuts."],
    "neutral": ["{bank} left its schedule of meetings for next year unchanged.",
                "{bank} published its annual report on payment systems.",
                "Members reviewed the latest survey of household spending.",
                "{bank} welcomed two new members to its board.",
                "The minutes summarised staff presentations on regional conditions."],
}
POLICY_ASKS = ["Is this central-bank statement hawkish, dovish or neutral? Answer in one word.",
               "Label the monetary policy tone of the statement: hawkish, dovish or neutral.",
               "Decide whether this sentence signals tighter policy (hawkish), looser policy (dovish) or neither (neutral)."]

ENTITY_SENTENCES = [
    ("{per} joined {org} as head of treasury in {loc}.", ["per", "org", "loc"]),
    ("{org} hired {per} to run its operations.", ["org", "per"]),
    ("A court in {loc} approved the merger of {org} and {org2}.", ["loc", "org", "org2"]),
    ("{per} told reporters in {loc} that {org} would expand.", ["per", "loc", "org"]),
    ("{org} sold its unit in {loc} to {org2}.", ["org", "loc", "org2"]),
    ("Investors led by {per} bought a stake in {org}.", ["per", "org"]),
    ("{org} appointed {per} and {per2} to its board.", ["org", "per", "per2"]),
    ("Demand in {loc} and {loc2} kept {org} busy.", ["loc", "loc2", "org"]),
]
ENTITY_ASKS = ["Extract the people (PER), companies (ORG) and places (LOC) from the sentence. Write one per line as "
               "\"name, TYPE\".",
               "Find the named entities in this text and list them one per line in the form \"name, TYPE\" with TYPE "
               "PER, ORG or LOC."]

REPORT = [
    "{co}, a company in the {sector} sector, reported {q}-quarter revenue of USD {m} million, a change of {g} "
    "percent from a year earlier. Operating margin came in at {mg} percent, and management said pricing held up "
    "better than expected.",
    "Analysts focused on {concept}, defined as {definition}. For {co}, the figure improved as cost controls offset "
    "weaker volumes, while net debt fell to USD {m2} million.",
    "The board declared a quarterly dividend of USD {dps} per share and reaffirmed full-year guidance.",
    "In its outlook, {co} cited interest rates, currency moves and {risk} as the main risks for the next twelve months.",
    "{per}, the chief financial officer of {co}, told investors in {place} that capital spending would reach USD "
    "{m2} million, mostly for new capacity.",
]
CB_STATEMENT = [
    "{bank} kept its policy rate at {r} percent. Members noted that {cond}. The next decision is due in six weeks.",
    "At its latest meeting {bank} judged that {cond}, and it {action}.",
    "The governor of {bank} said that {cond}; markets now expect the board to {action2}.",
]
CB_COND = ["household spending has cooled", "wage growth remains strong", "the currency has weakened",
           "credit growth has slowed", "services prices are still rising quickly", "unemployment is edging up"]
CB_ACTION = ["raised rates by a quarter point", "cut rates by a quarter point", "left rates on hold"]
CB_ACTION2 = ["raise rates again", "cut rates soon", "hold rates steady for some time"]
NEWS = [
    "{C} prices moved {dir} {p} percent this week as traders weighed {reason}. Dealers in {place} reported "
    "{demand} physical demand.",
    "{co} agreed to acquire a rival in {place} for USD {m} million in cash and shares. {per} will lead the combined "
    "business, which expects cost savings within two years.",
    "Shares of {co} moved {dir} after the company updated investors on {topic}. Trading volume was {vol} the "
    "thirty-day average.",
]
NEWS_REASONS = ["shipping delays", "a stronger dollar", "weather in growing regions", "new mine output",
                "factory data from Asia"]
RISKS = ["input costs", "wage growth", "regulation", "consumer demand", "supply chains"]


class Gen:
    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def pick(self, xs):
        return self.r.choice(xs)

    def fills(self) -> dict:
        r = self.r
        co, co2 = r.sample(COMPANIES, 2)
        per, per2 = r.sample(PEOPLE, 2)
        place, place2 = r.sample(PLACES, 2)
        concept, definition = r.choice(list(CONCEPTS.items()))
        c = r.choice(COMMODITIES)
        return {"co": co, "co2": co2, "per": per, "per2": per2, "place": place, "place2": place2,
                "sector": r.choice(SECTORS), "q": r.choice(["first", "second", "third", "fourth"]),
                "m": r.randint(120, 990), "m2": r.randint(50, 600), "p": round(r.uniform(1.5, 30), 1),
                "g": round(r.uniform(-25, 35), 1), "mg": round(r.uniform(4, 38), 1),
                "dps": round(r.uniform(0.05, 1.9), 2), "concept": concept, "definition": definition,
                "risk": r.choice(RISKS), "weekday": r.choice(["Monday", "Tuesday", "Thursday"]),
                "bank": r.choice(BANK_NAMES), "r": round(r.uniform(0.5, 6.5), 2), "bp": r.choice([25, 50]),
                "cond": r.choice(CB_COND), "action": r.choice(CB_ACTION), "action2": r.choice(CB_ACTION2),
                "C": c.capitalize(), "c": c, "dir": r.choice(["up", "down"]), "reason": r.choice(NEWS_REASONS),
                "demand": r.choice(["firm", "soft", "patchy"]), "topic": r.choice(["pricing", "hiring", "debt"]),
                "vol": r.choice(["twice", "half", "close to"]), "w": r.choice([3, 5, 7, 9])}


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def finance_cpt(g: Gen, i: int) -> dict:
    kind = i % 4
    f = g.fills()
    if kind == 0:  # company report
        paras = [p.format(**f) for p in REPORT]
        g.r.shuffle(paras)
        text = "\n\n".join(paras[: g.r.randint(2, 5)])
    elif kind == 1:  # central-bank statement
        text = " ".join(cap(g.pick(CB_STATEMENT).format(**g.fills())) for _ in range(g.r.randint(1, 3)))
    elif kind == 2:  # market news
        text = "\n\n".join(cap(g.pick(NEWS).format(**g.fills())) for _ in range(g.r.randint(1, 3)))
    else:  # glossary
        terms = g.r.sample(list(CONCEPTS.items()), g.r.randint(2, 4))
        text = "Glossary.\n" + "\n".join(f"{cap(t)}: {d}." for t, d in terms)
    return {"id": f"fin-cpt-{i}", "text": text}


def general_cpt(g: Gen, i: int) -> dict:
    chosen = g.r.sample(GENERAL_TOPICS, g.r.randint(1, 3))
    extra = g.pick(["Scientists continue to study the details.", "Teachers often use simple experiments to show it.",
                    "Its history spans many centuries.", "Everyday life offers many examples."])
    body = " ".join(f"On {t}: {fact}" for t, fact in chosen)
    return {"id": f"gen-cpt-{i}", "text": f"{body} {extra} Note {i} in this collection adds another example."}


def _user(content: str) -> dict:
    return {"role": "user", "content": content}


def _assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


def sentiment_it(g: Gen) -> list[dict]:
    label = g.pick(list(SENTIMENT))
    text = g.pick(SENTIMENT[label]).format(**g.fills())
    return [_user(f"{g.pick(SENTIMENT_ASKS)}\n\n{text}"), _assistant(label)]


def headline_it(g: Gen) -> list[dict]:
    direction = g.pick(list(COMMODITY_NEWS))
    c = g.pick(COMMODITIES)
    head = g.pick(COMMODITY_NEWS[direction]).format(C=cap(c), c=c, w=g.r.choice([3, 5, 7, 9]),
                                                    p=round(g.r.uniform(0.4, 4.0), 1))
    asked = g.pick(list(COMMODITY_ASKS))
    answer = "Yes" if asked == direction else "No"
    return [_user(f"{head}\n\n{g.pick(COMMODITY_ASKS[asked])} Reply yes or no."), _assistant(answer)]


def policy_it(g: Gen) -> list[dict]:
    label = g.pick(list(POLICY))
    text = cap(g.pick(POLICY[label]).format(**g.fills()))
    return [_user(f"{g.pick(POLICY_ASKS)}\n\n{text}"), _assistant(label)]


def entities_it(g: Gen) -> list[dict]:
    tpl, slots = g.pick(ENTITY_SENTENCES)
    f = g.fills()
    vals = {"per": f["per"], "per2": f["per2"], "org": f["co"], "org2": f["co2"], "loc": f["place"],
            "loc2": f["place2"]}
    types = {"per": "PER", "per2": "PER", "org": "ORG", "org2": "ORG", "loc": "LOC", "loc2": "LOC"}
    answer = "\n".join(f"{vals[s]}, {types[s]}" for s in slots)
    return [_user(f"{g.pick(ENTITY_ASKS)}\n\n{tpl.format(**vals)}"), _assistant(answer)]


def reasoning_it(g: Gen) -> list[dict]:
    kind = g.r.randint(0, 3)
    if kind == 0:
        price, dps = g.r.choice([20, 25, 40, 50, 80]), g.r.choice([0.5, 1.0, 1.5, 2.0])
        q, steps, right = (f"A stock priced at USD {price} pays an annual dividend of USD {dps}. What is its dividend "
                           f"yield?", f"Dividend yield = dividend / price = {dps} / {price}.", f"{100 * dps / price:.1f}%")
        wrong = [f"{price / dps:.1f}%", f"{100 * dps / price + 2:.1f}%"]
    elif kind == 1:
        debt, eq = g.r.choice([200, 300, 450, 600]), g.r.choice([300, 400, 500, 750])
        q, steps, right = (f"A company carries USD {debt} million of debt and USD {eq} million of equity. What is its "
                           f"debt-to-equity ratio?", f"Debt-to-equity = debt / equity = {debt} / {eq}.", f"{debt / eq:.2f}")
        wrong = [f"{eq / debt:.2f}", f"{debt / (debt + eq) + 0.2:.2f}"]
    elif kind == 2:
        face, cr = g.r.choice([1000, 500]), g.r.choice([3, 4, 5, 6])
        q, steps, right = (f"A bond with a face value of USD {face} has a {cr} percent annual coupon. How much "
                           f"interest does it pay each year?", f"Coupon = face value x coupon rate = {face} x {cr}%.",
                           f"USD {face * cr // 100}")
        wrong = [f"USD {face * cr // 10}", f"USD {cr}"]
    else:
        fixed, price, var = g.r.choice([1000, 2000, 6000]), g.r.choice([10, 20, 25]), g.r.choice([4, 5, 15])
        units = fixed / (price - var)
        q, steps, right = (f"Fixed costs are USD {fixed}, the selling price is USD {price} per unit and the variable "
                           f"cost is USD {var} per unit. How many units must be sold to break even?",
                           f"Break-even units = fixed costs / (price - variable cost) = {fixed} / ({price} - {var}).",
                           f"{units:.0f}")
        wrong = [f"{fixed / price:.0f}", f"{fixed / var:.0f}"]
    opts = [right] + wrong
    g.r.shuffle(opts)
    letter = "ABC"[opts.index(right)]
    listing = "\n".join(f"({'ABC'[j]}) {o}" for j, o in enumerate(opts))
    return [{"role": "system", "content": "You are a careful financial analyst."},
            _user(f"{q}\n{listing}\nShow one line of working, then put the letter of your choice in double "
                  f"square brackets."),
            _assistant(f"{steps} The result is {right}, so the answer is [[{letter}]].")]


def glossary_it(g: Gen) -> list[dict]:
    concept, definition = g.pick(list(CONCEPTS.items()))
    if g.r.random() < 0.7:
        return [_user(f"In one sentence, what does {concept} mean?"), _assistant(f"{cap(concept)} is {definition}.")]
    return [_user(f"In one sentence, what does {concept} mean?"), _assistant(f"{cap(concept)} is {definition}."),
            _user("Why do analysts care about it?"),
            _assistant(f"Because {concept} helps compare companies and spot changes in risk or performance.")]


FIN_IT = [(sentiment_it, 320), (headline_it, 320), (policy_it, 320), (entities_it, 320), (reasoning_it, 260),
          (glossary_it, 160)]


def finance_it(g: Gen, n: int) -> list[dict]:
    kinds = [fn for fn, k in FIN_IT for _ in range(k)]
    if len(kinds) != n:
        raise ValueError(f"finance_it: task mix sums to {len(kinds)}, SIZES says {n}")
    g.r.shuffle(kinds)
    return [{"id": f"fin-it-{i}", "messages": fn(g)} for i, fn in enumerate(kinds)]


SYNONYMS = {"river": "stream", "planet": "world", "garden": "yard", "window": "pane", "music": "melody",
            "mountain": "peak", "quick": "fast", "happy": "glad", "begin": "start", "large": "huge"}
FORMAT_TOPICS = ["walking", "reading", "sleep", "tea", "rivers", "trains", "gardens", "museums"]


def general_it(g: Gen, i: int) -> dict:
    kind = i % 6
    if kind == 0:
        a, b = g.r.randint(13, 99), g.r.randint(13, 99)
        return {"id": f"gen-it-{i}", "prompt": f"Compute {a} + {b}.", "response": f"{a} + {b} = {a + b}."}
    if kind == 1:
        a, b = g.r.randint(11, 30), g.r.randint(11, 20)
        return {"id": f"gen-it-{i}", "prompt": f"Multiply {a} by {b}.", "response": f"{a} x {b} = {a * b}."}
    if kind == 2:
        topic, fact = g.pick(GENERAL_TOPICS)
        return {"id": f"gen-it-{i}", "prompt": f"Tell me briefly about {topic}.", "response": fact}
    if kind == 3:
        word = g.pick(list(SYNONYMS))
        return {"id": f"gen-it-{i}", "system": "Answer concisely.",
                "prompt": f"Give a synonym or related word for '{word}'.", "response": SYNONYMS[word]}
    if kind == 4:
        t, k = g.pick(FORMAT_TOPICS), g.r.choice([2, 3])
        tips = [f"- {x}" for x in ["Start small.", "Keep a routine.", "Ask others for ideas.", "Enjoy the process."][:k]]
        return {"id": f"gen-it-{i}", "prompt": f"Give {k} short tips about {t} as a bulleted list.",
                "response": "\n".join(tips)}
    t = g.pick(FORMAT_TOPICS)
    style = g.r.randint(0, 2)
    if style == 0:
        return {"id": f"gen-it-{i}", "prompt": f"Say something nice about {t}, all in lowercase.",
                "response": f"{t} can make an ordinary day feel a little better."}
    if style == 1:
        return {"id": f"gen-it-{i}", "prompt": f"Reply with a JSON object with a key \"subject\" for {t}.",
                "response": json.dumps({"subject": t})}
    return {"id": f"gen-it-{i}", "prompt": f"Write a sentence about {t} with no commas.",
            "response": f"Many people enjoy {t} because it is calm and simple."}


def build() -> dict[str, list[dict]]:
    g = [Gen(SEED + k) for k in range(4)]
    return {"finance_cpt.jsonl": [finance_cpt(g[0], i) for i in range(SIZES["finance_cpt"])],
            "general_cpt.jsonl": [general_cpt(g[1], i) for i in range(SIZES["general_cpt"])],
            "finance_it.jsonl": finance_it(g[2], SIZES["finance_it"]),
            "general_it.jsonl": [general_it(g[3], i) for i in range(SIZES["general_it"])]}


def write(name: str, rows: list[dict]) -> None:
    path = OUT / name
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    for name, rows in build().items():
        write(name, rows)
        print(f"wrote {name}: {len(rows)} records")

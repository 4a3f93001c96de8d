"""Regenerate the shipped FinTrain sample data (deterministic): python samples/fintrain/generate.py

Four small sources, written for this project: finance CPT text, general CPT text, finance instruction data
(chat messages) and general instruction data (prompt/response fields, to exercise both field mappings).
"""

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent
R = random.Random(20250107)

COMPANIES = ["Northwind Bank", "Aster Metals", "Bluepeak Energy", "Cobalt Logistics", "Harbor Retail Group",
             "Ironvale Pharma", "Juniper Software", "Kestrel Airlines", "Lumen Utilities", "Meridian Insurance",
             "Orchid Foods", "Pinecrest REIT", "Quartz Semiconductors", "Redwood Telecom", "Summit Capital"]
SECTORS = ["banking", "mining", "energy", "logistics", "retail", "pharmaceuticals", "software", "airlines",
           "utilities", "insurance", "consumer staples", "real estate", "semiconductors", "telecom", "asset management"]
QUARTERS = ["first", "second", "third", "fourth"]
CONCEPTS = {
    "EBITDA": "earnings before interest, taxes, depreciation and amortization, a proxy for operating cash generation",
    "free cash flow": "operating cash flow minus capital expenditures, the cash available to investors",
    "duration": "the sensitivity of a bond's price to changes in interest rates, measured in years",
    "current ratio": "current assets divided by current liabilities, a measure of short-term liquidity",
    "price-to-earnings ratio": "share price divided by earnings per share, a valuation multiple",
    "net interest margin": "net interest income divided by average earning assets, a core bank profitability metric",
    "working capital": "current assets minus current liabilities",
    "beta": "a stock's sensitivity to market movements relative to a benchmark index",
    "yield curve": "the plot of yields across maturities for bonds of equal credit quality",
    "return on equity": "net income divided by average shareholders' equity",
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
]


def pct():
    return round(R.uniform(-25, 35), 1)


def money():
    return f"${R.choice([R.randint(120, 990), round(R.uniform(1.1, 48.0), 1)])} {R.choice(['million', 'billion'])}"


def finance_cpt(i):
    c, s, q = R.choice(COMPANIES), R.choice(SECTORS), R.choice(QUARTERS)
    g, m = pct(), round(R.uniform(4, 38), 1)
    concept, definition = R.choice(list(CONCEPTS.items()))
    paras = [
        f"{c}, a company in the {s} sector, reported {q}-quarter revenue of {money()}, a change of {g}% from a year "
        f"earlier. Operating margin came in at {m}%, and management said pricing held up better than expected.",
        f"Analysts focused on {concept}, defined as {definition}. For {c}, the figure improved as cost controls "
        f"offset weaker volumes, while net debt fell to {money()}.",
        f"The board declared a quarterly dividend of ${round(R.uniform(0.05, 1.9), 2)} per share and reaffirmed "
        f"full-year guidance. Shares {'rose' if g > 0 else 'fell'} {abs(round(g / 3, 1))}% in afternoon trading.",
        f"In its outlook, {c} cited interest rates, currency moves and {R.choice(['input costs', 'wage growth', 'regulation', 'consumer demand'])} "
        f"as the main risks for the next twelve months.",
    ]
    R.shuffle(paras)
    return {"id": f"fin-cpt-{i}", "text": "\n\n".join(paras[: R.randint(2, 4)])}


def general_cpt(i):
    topic, fact = R.choice(GENERAL_TOPICS)
    extra = R.choice(["Scientists continue to study the details.", "Teachers often use simple experiments to show it.",
                      "Its history spans many centuries.", "Everyday life offers many examples."])
    return {"id": f"gen-cpt-{i}", "text": f"An introduction to {topic}. {fact} {extra} "
                                          f"Observation number {i} in this collection adds another example."}


def finance_it(i):
    c = R.choice(COMPANIES)
    kind = i % 5
    if kind == 0:
        g = pct()
        label = "positive" if g > 3 else "negative" if g < -3 else "neutral"
        headline = f"{c} reports revenue {'up' if g >= 0 else 'down'} {abs(g)}% year over year"
        msgs = [{"role": "user", "content": f"What is the sentiment of this financial headline? Answer with positive, "
                                            f"negative or neutral.\nHeadline: {headline}"},
                {"role": "assistant", "content": label}]
    elif kind == 1:
        a, l = R.randint(200, 900), R.randint(100, 800)
        msgs = [{"role": "system", "content": "You are a careful financial analyst."},
                {"role": "user", "content": f"{c} has current assets of ${a} million and current liabilities of ${l} "
                                            f"million. What is its current ratio?"},
                {"role": "assistant", "content": f"Step 1: The current ratio is current assets divided by current "
                                                 f"liabilities. Step 2: {a} / {l} = {a / l:.2f}. The current ratio is {a / l:.2f}."}]
    elif kind == 2:
        concept, definition = R.choice(list(CONCEPTS.items()))
        msgs = [{"role": "user", "content": f"Define {concept} in one sentence."},
                {"role": "assistant", "content": f"{concept[0].upper() + concept[1:]} is {definition}."}]
    elif kind == 3:
        person = R.choice(["Maria Chen", "David Okafor", "Priya Nair", "Lars Eriksen", "Sofia Rossi"])
        msgs = [{"role": "user", "content": f"List the organizations and persons in: \"{person} was named chief "
                                            f"financial officer of {c}.\""},
                {"role": "assistant", "content": f"Organizations: {c}. Persons: {person}."}]
    else:
        r = round(R.uniform(1, 9), 2)
        msgs = [{"role": "user", "content": f"If the Federal Reserve raises its policy rate to {r}% and signals more "
                                            f"hikes, is the statement hawkish or dovish?"},
                {"role": "assistant", "content": "Hawkish: higher rates and signals of further tightening."},
                {"role": "user", "content": "Why?"},
                {"role": "assistant", "content": "Tightening aims to cool inflation, which markets read as hawkish."}]
    return {"id": f"fin-it-{i}", "messages": msgs}


def general_it(i):
    kind = i % 3
    if kind == 0:
        a, b = R.randint(2, 99), R.randint(2, 99)
        return {"id": f"gen-it-{i}", "prompt": f"What is {a} plus {b}?", "response": f"{a} plus {b} is {a + b}."}
    if kind == 1:
        topic, fact = R.choice(GENERAL_TOPICS)
        return {"id": f"gen-it-{i}", "prompt": f"Explain {topic} briefly.", "response": fact}
    word = R.choice(["river", "planet", "garden", "window", "music", "mountain"])
    return {"id": f"gen-it-{i}", "system": "Answer concisely.", "prompt": f"Give a synonym or related word for '{word}'.",
            "response": {"river": "stream", "planet": "world", "garden": "yard", "window": "pane", "music": "melody",
                         "mountain": "peak"}[word]}


def write(name, rows):
    with open(OUT / name, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write("finance_cpt.jsonl", [finance_cpt(i) for i in range(300)])
    write("general_cpt.jsonl", [general_cpt(i) for i in range(150)])
    write("finance_it.jsonl", [finance_it(i) for i in range(200)])
    write("general_it.jsonl", [general_it(i) for i in range(100)])
    print("wrote", sorted(p.name for p in OUT.glob("*.jsonl")))
